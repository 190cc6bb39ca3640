//! The seed's T-SQL and mi-link-surface §2, verbatim with placeholders filled, must parse to the expected AST.

use crate::admin::*;
use crate::ast::*;
use crate::parser::{parse_batch, split_go};

fn kinds(src: &str) -> Vec<StatementKind> {
    match parse_batch(src) {
        Ok(v) => v.into_iter().map(|s| s.kind).collect(),
        Err(e) => panic!("parse failed: {}\n--- batch ---\n{}", e, src),
    }
}

fn admin(k: &StatementKind) -> &Admin {
    match k {
        StatementKind::Admin(a) => a,
        other => panic!("not admin: {:?}", other),
    }
}

fn script_kinds(script: &str) -> Vec<StatementKind> {
    split_go(script).iter().flat_map(|b| kinds(b)).collect()
}

const SEED_MASTER_KEY: &str = "-- Create MASTER KEY encryption password
-- Keep the password confidential and in a secure place.
USE MASTER
CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'Str0ng!Passw0rd'
GO

-- Create the SQL Server certificate for SQL Managed Instance link
USE MASTER
GO

DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @sqlserver_certificate_subject NVARCHAR(MAX) = N'Certificate for ' + @sqlserver_certificate_name
DECLARE @create_sqlserver_certificate_command NVARCHAR(MAX) = N'CREATE CERTIFICATE [' + @sqlserver_certificate_name + '] WITH SUBJECT = ''' + @sqlserver_certificate_subject + ''', EXPIRY_DATE = ''03/30/2025'''
EXEC sp_executesql @stmt = @create_sqlserver_certificate_command
GO
";

#[test]
fn seed_master_key_and_certificate() {
    let batches = split_go(SEED_MASTER_KEY);
    assert_eq!(batches.len(), 3);
    let b0 = kinds(&batches[0]);
    assert_eq!(b0.len(), 2);
    assert!(matches!(&b0[0], StatementKind::Use(i) if i.value == "MASTER"));
    assert!(
        matches!(admin(&b0[1]), Admin::CreateMasterKey { password: Some(Expr::Literal(Literal::String(p))) } if p == "Str0ng!Passw0rd")
    );
    let b2 = kinds(&batches[2]);
    assert_eq!(b2.len(), 4);
    match &b2[0] {
        StatementKind::Declare(d) => match &d[0] {
            Declaration::Scalar {
                name,
                ty,
                init: Some(Expr::Binary { op: BinOp::Add, .. }),
            } => {
                assert_eq!(name, "@sqlserver_certificate_name");
                assert_eq!(
                    *ty,
                    crate::types::DataType::NVarChar(crate::types::Len::Max)
                );
            }
            other => panic!("{:?}", other),
        },
        other => panic!("{:?}", other),
    }
    match &b2[3] {
        StatementKind::Exec(e) => {
            assert!(e.is_sp_executesql());
            let a = e.arg(0, "@stmt").unwrap();
            assert_eq!(
                a.value,
                Expr::Variable("@create_sqlserver_certificate_command".into())
            );
        }
        other => panic!("{:?}", other),
    }
}

#[test]
fn seed_queries() {
    let k = script_kinds("USE MASTER\nGO\nSELECT * FROM sys.certificates\n");
    assert_eq!(k.len(), 2);
    let k = kinds(
        "-- Show the public key of the generated SQL Server certificate
DECLARE @sqlserver_certificate_name NVARCHAR(MAX) = N'Cert_' + @@servername  + N'_endpoint'
DECLARE @PUBLICKEYENC VARBINARY(MAX) = CERTENCODED(CERT_ID(@sqlserver_certificate_name));
SELECT @PUBLICKEYENC AS PublicKeyEncoded;",
    );
    assert_eq!(k.len(), 3);
    let k = kinds("-- Execute stored procedure on SQL Managed Instance to get public key of the instance certificate.
EXEC sp_get_endpoint_certificate @endpoint_type = 4");
    match &k[0] {
        StatementKind::Exec(e) => {
            assert_eq!(e.args[0].name.as_deref(), Some("@endpoint_type"));
            assert_eq!(e.args[0].value, Expr::Literal(Literal::Int(4)));
        }
        other => panic!("{:?}", other),
    }
    kinds("SELECT * FROM sys.database_mirroring_endpoints WHERE type_desc = 'DATABASE_MIRRORING'");
    kinds(
        "-- View database mirroring endpoints on SQL Server
SELECT
    name, type_desc, state_desc, role_desc,
    connection_auth_desc, is_encryption_enabled, encryption_algorithm_desc
FROM 
    sys.database_mirroring_endpoints",
    );
    kinds("SELECT @@SERVERNAME AS SQLServerName ");
    kinds(
        "-- This will show that Availability Group and Distributed Availability Group have been created on SQL Server.
SELECT
    name, is_distributed, cluster_type_desc,
    sequence_number, is_contained
FROM
    sys.availability_groups",
    );
    let k = kinds(
        "SELECT
    r.replica_server_name AS [Replica],
    r.endpoint_url AS [Endpoint],
    rs.connected_state_desc AS [Connected state],
    rs.last_connect_error_description AS [Last connection error],
    rs.last_connect_error_number AS [Last connection error No],
    rs.last_connect_error_timestamp AS [Last error timestamp]
FROM
    sys.dm_hadr_availability_replica_states rs
    JOIN sys.availability_replicas r
    ON rs.replica_id = r.replica_id",
    );
    match &k[0] {
        StatementKind::Query(q) => match &q.body {
            SetExpr::Select(s) => {
                assert_eq!(s.items.len(), 6);
                assert_eq!(s.from[0].joins.len(), 1);
                match &s.from[0].table {
                    TableFactor::Table { name, alias, .. } => {
                        assert_eq!(name.dotted(), "sys.dm_hadr_availability_replica_states");
                        assert_eq!(alias.as_ref().unwrap().value, "rs");
                    }
                    other => panic!("{:?}", other),
                }
            }
            other => panic!("{:?}", other),
        },
        other => panic!("{:?}", other),
    }
}

#[test]
fn seed_certificate_from_binary() {
    let k = kinds("USE MASTER\nCREATE CERTIFICATE [sqlmi1.6d710bcf372b.database.windows.net]\nFROM BINARY = 0x308201A0AB\n");
    assert_eq!(k.len(), 2);
    match admin(&k[1]) {
        Admin::CreateCertificate(c) => {
            assert_eq!(c.name.value, "sqlmi1.6d710bcf372b.database.windows.net");
            assert_eq!(
                c.source,
                CertSource::Binary(Expr::Literal(Literal::Binary(vec![
                    0x30, 0x82, 0x01, 0xA0, 0xAB
                ])))
            );
        }
        other => panic!("{:?}", other),
    }
}

#[test]
fn seed_endpoint_create_and_alter() {
    let k = script_kinds(
        "-- Create connection endpoint listener on SQL Server
USE MASTER
CREATE ENDPOINT database_mirroring_endpoint
    STATE=STARTED   
    AS TCP (LISTENER_PORT=5022, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (
        ROLE=ALL,
        AUTHENTICATION = CERTIFICATE Cert_sqlserver1_endpoint,
        ENCRYPTION = REQUIRED ALGORITHM AES
    )  
GO
",
    );
    match admin(&k[1]) {
        Admin::CreateEndpoint(e) => {
            assert_eq!(e.name.value, "database_mirroring_endpoint");
            assert_eq!(e.state, Some(EndpointState::Started));
            assert_eq!(e.listener_port, Some(Expr::Literal(Literal::Int(5022))));
            assert_eq!(e.listener_ip, Some(ListenerIp::All));
            assert_eq!(e.role, Some(MirroringRole::All));
            let a = e.authentication.as_ref().unwrap();
            assert_eq!(
                a.certificate.as_ref().unwrap().value,
                "Cert_sqlserver1_endpoint"
            );
            assert_eq!(a.connection_auth_desc(), "CERTIFICATE");
            let enc = e.encryption.as_ref().unwrap();
            assert_eq!(enc.mode, EncryptionMode::Required);
            assert_eq!(enc.algorithms, vec![EncryptionAlgorithm::Aes]);
        }
        other => panic!("{:?}", other),
    }
    let k = script_kinds(
        "-- Alter the existing database mirroring endpoint to use CERTIFICATE for authentication and AES for encryption
USE MASTER
ALTER ENDPOINT [Hadr_endpoint]   
    STATE=STARTED   
    AS TCP (LISTENER_PORT=5022, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (
        ROLE=ALL,
        AUTHENTICATION = WINDOWS NEGOTIATE CERTIFICATE [Cert_sqlserver1_endpoint],
        ENCRYPTION = REQUIRED ALGORITHM AES
    )
GO
",
    );
    match admin(&k[1]) {
        Admin::AlterEndpoint(e) => {
            let a = e.authentication.as_ref().unwrap();
            assert_eq!(a.windows, Some(WindowsAuth::Negotiate));
            assert_eq!(a.connection_auth_desc(), "NEGOTIATE_CERTIFICATE");
        }
        other => panic!("{:?}", other),
    }
}

#[test]
fn seed_availability_group() {
    let k = script_kinds(
        "-- Create primary AG on SQL Server
USE MASTER
CREATE AVAILABILITY GROUP [AG_db1]
WITH (CLUSTER_TYPE = NONE)
    FOR database [db1]  
    REPLICA ON   
        'sqlserver1' WITH   
            (  
            ENDPOINT_URL = 'TCP://10.0.1.100:5022',
            AVAILABILITY_MODE = SYNCHRONOUS_COMMIT,
            FAILOVER_MODE = MANUAL,
            SEEDING_MODE = AUTOMATIC
            );
GO
",
    );
    match admin(&k[1]) {
        Admin::CreateAvailabilityGroup(ag) => {
            assert_eq!(ag.name.value, "AG_db1");
            assert_eq!(ag.cluster_type().as_deref(), Some("NONE"));
            assert!(!ag.distributed);
            assert_eq!(ag.databases[0].value, "db1");
            let r = &ag.replicas[0];
            assert_eq!(r.name, "sqlserver1");
            assert_eq!(r.endpoint_url.as_deref(), Some("TCP://10.0.1.100:5022"));
            assert_eq!(
                r.availability_mode,
                Some(AvailabilityMode::SynchronousCommit)
            );
            assert_eq!(r.failover_mode, Some(FailoverMode::Manual));
            assert_eq!(r.seeding_mode, Some(SeedingMode::Automatic));
        }
        other => panic!("{:?}", other),
    }
}

#[test]
fn surface_section_2() {
    let stmts = [
        "CREATE MASTER KEY ENCRYPTION BY PASSWORD='Str0ng!Passw0rd'",
        "IF NOT EXISTS (SELECT * FROM sys.symmetric_keys WHERE symmetric_key_id = 101) CREATE MASTER KEY ENCRYPTION BY PASSWORD='x'",
        "CREATE CERTIFICATE [Cert_sqlserver1_endpoint] WITH SUBJECT='Certificate for x', EXPIRY_DATE='03/30/2030'",
        "SELECT CERTENCODED(CERT_ID(N'Cert_sqlserver1_endpoint'))",
        "CREATE CERTIFICATE [mi1.abc.database.windows.net] FROM BINARY = 0x3082",
        "EXEC sp_get_endpoint_certificate 4",
        "CREATE CERTIFICATE [root] FROM FILE='C:\\certs\\root.crt'",
        "EXEC sp_certificate_add_issuer @certid, N'*.database.windows.net'",
        "EXEC sp_validate_certificate_ca_chain 5",
        "CREATE ENDPOINT database_mirroring_endpoint STATE=STARTED AS TCP (LISTENER_PORT=5022, LISTENER_IP=ALL) FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION=CERTIFICATE [cert], ENCRYPTION=REQUIRED ALGORITHM AES)",
        "ALTER ENDPOINT e FOR DATABASE_MIRRORING (AUTHENTICATION = WINDOWS NEGOTIATE CERTIFICATE [cert], ENCRYPTION = REQUIRED ALGORITHM AES RC4)",
        "ALTER DATABASE db SET RECOVERY FULL",
        "BACKUP DATABASE db TO DISK='/backups/db.bak'",
        "CREATE AVAILABILITY GROUP [AG] WITH (CLUSTER_TYPE = NONE) FOR DATABASE [db] REPLICA ON N'server' WITH (ENDPOINT_URL='TCP://10.0.0.4:5022', AVAILABILITY_MODE=SYNCHRONOUS_COMMIT, FAILOVER_MODE=MANUAL, SEEDING_MODE=AUTOMATIC)",
        "CREATE AVAILABILITY GROUP [AG] WITH (CLUSTER_TYPE = NONE) FOR REPLICA ON N'server' WITH (ENDPOINT_URL='TCP://10.0.0.4:5022', AVAILABILITY_MODE=SYNCHRONOUS_COMMIT, FAILOVER_MODE=MANUAL, SEEDING_MODE=AUTOMATIC)",
        "ALTER AVAILABILITY GROUP [AG] GRANT CREATE ANY DATABASE",
        "CREATE AVAILABILITY GROUP [AG] WITH (CLUSTER_TYPE = NONE) FOR DATABASE [DB01],[DB03] REPLICA ON N'server' WITH (ENDPOINT_URL='TCP://h:5022', AVAILABILITY_MODE=ASYNCHRONOUS_COMMIT, FAILOVER_MODE=MANUAL, SEEDING_MODE=AUTOMATIC)",
        "CREATE AVAILABILITY GROUP [DAG] WITH (DISTRIBUTED) AVAILABILITY GROUP ON
    N'AG' WITH (LISTENER_URL='TCP://10.0.0.4:5022', AVAILABILITY_MODE=ASYNCHRONOUS_COMMIT, FAILOVER_MODE=MANUAL, SEEDING_MODE=AUTOMATIC, SESSION_TIMEOUT=20),
    N'AG_MI' WITH (LISTENER_URL='tcp://mi1.abc.database.windows.net:5022;Server=[mi1]', AVAILABILITY_MODE=ASYNCHRONOUS_COMMIT, FAILOVER_MODE=MANUAL, SEEDING_MODE=AUTOMATIC)",
        "ALTER AVAILABILITY GROUP [DAG] MODIFY AVAILABILITY GROUP ON 'AG' WITH (AVAILABILITY_MODE=SYNCHRONOUS_COMMIT), 'MI' WITH (AVAILABILITY_MODE=SYNCHRONOUS_COMMIT)",
        "ALTER AVAILABILITY GROUP [DAG] FAILOVER",
        "ALTER AVAILABILITY GROUP [DAG] FORCE_FAILOVER_ALLOW_DATA_LOSS",
        "ALTER AVAILABILITY GROUP [DAG] SET (ROLE = SECONDARY)",
        "DROP AVAILABILITY GROUP [DAG]; DROP AVAILABILITY GROUP [AG]",
        "BACKUP LOG [db] TO DISK=N'/backups/db.trn' WITH NOFORMAT, NOINIT, NAME=N'db log', SKIP, NOREWIND, NOUNLOAD, COMPRESSION, STATS=1",
        "DBCC TRACEON(12381)",
        "DBCC TRACESTATUS",
        "SELECT SERVERPROPERTY('IsHadrEnabled')",
        "EXEC sys.sp_multidb_milink 1",
        "DBCC SQLPERF(LOGSPACE)",
    ];
    for s in stmts {
        let k = kinds(s);
        assert!(!k.is_empty(), "{}", s);
    }
    match admin(&kinds(stmts[17])[0]) {
        Admin::CreateAvailabilityGroup(ag) => {
            assert!(ag.distributed);
            assert_eq!(ag.replicas.len(), 2);
            assert_eq!(ag.replicas[0].session_timeout, Some(20));
            assert_eq!(
                ag.replicas[1].listener_url.as_deref(),
                Some("tcp://mi1.abc.database.windows.net:5022;Server=[mi1]")
            );
        }
        other => panic!("{:?}", other),
    }
    match admin(&kinds(stmts[23])[0]) {
        Admin::Backup(b) => {
            assert_eq!(b.kind, BackupKind::Log);
            assert_eq!(b.options.len(), 8);
            assert_eq!(
                find_opt(&b.options, "STATS").unwrap().word().as_deref(),
                Some("1")
            );
            assert_eq!(
                find_opt(&b.options, "NAME").unwrap().word().as_deref(),
                Some("db log")
            );
        }
        other => panic!("{:?}", other),
    }
    match admin(&kinds(stmts[16])[0]) {
        Admin::CreateAvailabilityGroup(ag) => assert_eq!(ag.databases.len(), 2),
        other => panic!("{:?}", other),
    }
    match admin(&kinds(stmts[10])[0]) {
        Admin::AlterEndpoint(e) => {
            assert_eq!(
                e.encryption.as_ref().unwrap().algorithms,
                vec![EncryptionAlgorithm::Aes, EncryptionAlgorithm::Rc4]
            )
        }
        other => panic!("{:?}", other),
    }
}
