//! Server administration statements (keys, certificates, endpoints, availability groups, backup/restore,
//! databases, logins, DBCC) with a typed AST. sqlparser has none of these grammars, hence our own.

use crate::ast::{Expr, Ident, Literal};
use crate::error::{Result, SqlError};
use crate::lexer::{is_reserved, Tok};
use crate::parser::Parser;

/// A generic `NAME [= value]` option. Names are upper-cased; multi-word names are joined by one space
/// ("ENCRYPTION BY PASSWORD").
#[derive(Debug, Clone, PartialEq)]
pub struct Opt {
    pub name: String,
    pub value: Option<OptValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OptValue {
    /// A literal or @variable (evaluate with the session's variables).
    Expr(Expr),
    /// Bare keyword(s), upper-cased and joined by one space: `SYNCHRONOUS_COMMIT`, `REQUIRED ALGORITHM AES`.
    Word(String),
    /// A parenthesised list: PRIVATE KEY (…), SECONDARY_ROLE (…).
    List(Vec<Opt>),
}

impl Opt {
    /// The value as a word (for keyword-valued options) or the text of a string literal.
    pub fn word(&self) -> Option<String> {
        match &self.value {
            Some(OptValue::Word(w)) => Some(w.clone()),
            Some(OptValue::Expr(Expr::Literal(Literal::String(s)))) => Some(s.clone()),
            Some(OptValue::Expr(Expr::Literal(Literal::NString(s)))) => Some(s.clone()),
            Some(OptValue::Expr(Expr::Literal(Literal::Int(n)))) => Some(n.to_string()),
            _ => None,
        }
    }
    pub fn expr(&self) -> Option<&Expr> {
        match &self.value {
            Some(OptValue::Expr(e)) => Some(e),
            _ => None,
        }
    }
}

/// Finds an option by (upper-case) name.
pub fn find_opt<'o>(opts: &'o [Opt], name: &str) -> Option<&'o Opt> {
    opts.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterMasterKey {
    Regenerate { password: Expr, force: bool },
    AddEncryptionByServiceMasterKey,
    DropEncryptionByServiceMasterKey,
    AddEncryptionByPassword(Expr),
    DropEncryptionByPassword(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CertSource {
    /// WITH SUBJECT = …: generate a key pair and a self-signed certificate.
    Generate,
    Binary(Expr),
    File(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateCertificate {
    pub name: Ident,
    pub authorization: Option<Ident>,
    pub source: CertSource,
    pub subject: Option<Expr>,
    pub start_date: Option<Expr>,
    pub expiry_date: Option<Expr>,
    /// ENCRYPTION BY PASSWORD for the generated private key (else the master key protects it).
    pub encryption_password: Option<Expr>,
    /// WITH PRIVATE KEY (FILE = …, BINARY = …, DECRYPTION BY PASSWORD = …, ENCRYPTION BY PASSWORD = …).
    pub private_key: Vec<Opt>,
    pub active_for_begin_dialog: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupCertificate {
    pub name: Ident,
    pub file: Expr,
    pub private_key: Vec<Opt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    Started,
    Stopped,
    Disabled,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListenerIp {
    All,
    /// An address as written inside the parentheses, without quotes: `10.0.0.4`, `::1`.
    Address(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirroringRole {
    All,
    Partner,
    Witness,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowsAuth {
    Ntlm,
    Kerberos,
    Negotiate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointAuth {
    /// WINDOWS [NTLM|KERBEROS|NEGOTIATE]; NEGOTIATE when WINDOWS has no qualifier.
    pub windows: Option<WindowsAuth>,
    pub certificate: Option<Ident>,
    /// CERTIFICATE c WINDOWS … (certificate tried first) vs WINDOWS … CERTIFICATE c.
    pub certificate_first: bool,
}

impl EndpointAuth {
    /// sys.database_mirroring_endpoints.connection_auth_desc.
    pub fn connection_auth_desc(&self) -> String {
        let w = self.windows.map(|w| match w {
            WindowsAuth::Ntlm => "NTLM",
            WindowsAuth::Kerberos => "KERBEROS",
            WindowsAuth::Negotiate => "NEGOTIATE",
        });
        match (w, &self.certificate) {
            (Some(w), None) => w.to_string(),
            (None, Some(_)) => "CERTIFICATE".into(),
            (Some(w), Some(_)) if self.certificate_first => format!("CERTIFICATE_{}", w),
            (Some(w), Some(_)) => format!("{}_CERTIFICATE", w),
            (None, None) => "NEGOTIATE".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionMode {
    Disabled,
    Supported,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionAlgorithm {
    Aes,
    Rc4,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointEncryption {
    pub mode: EncryptionMode,
    /// In the order written; empty means the default (RC4 on SQL Server; we treat it as AES).
    pub algorithms: Vec<EncryptionAlgorithm>,
}

/// CREATE ENDPOINT / ALTER ENDPOINT: for ALTER every part is optional (only what is written changes).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointDef {
    pub name: Ident,
    pub authorization: Option<Ident>,
    pub state: Option<EndpointState>,
    pub listener_port: Option<Expr>,
    pub listener_ip: Option<ListenerIp>,
    /// FOR DATABASE_MIRRORING was written.
    pub database_mirroring: bool,
    pub role: Option<MirroringRole>,
    pub authentication: Option<EndpointAuth>,
    pub encryption: Option<EndpointEncryption>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvailabilityMode {
    SynchronousCommit,
    AsynchronousCommit,
    ConfigurationOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    Automatic,
    Manual,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedingMode {
    Automatic,
    Manual,
}

/// `N'server' WITH (…)` in REPLICA ON, or `N'ag' WITH (…)` in a distributed group's AVAILABILITY GROUP ON.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSpec {
    pub name: String,
    pub endpoint_url: Option<String>,
    /// Distributed groups use LISTENER_URL.
    pub listener_url: Option<String>,
    pub availability_mode: Option<AvailabilityMode>,
    pub failover_mode: Option<FailoverMode>,
    pub seeding_mode: Option<SeedingMode>,
    pub session_timeout: Option<i64>,
    /// Every option as written, including PRIMARY_ROLE(…) / SECONDARY_ROLE(…) and ones not typed above.
    pub options: Vec<Opt>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateAvailabilityGroup {
    pub name: Ident,
    /// WITH (CLUSTER_TYPE = NONE, DB_FAILOVER = ON, …); DISTRIBUTED appears as an option with no value.
    pub options: Vec<Opt>,
    pub distributed: bool,
    pub databases: Vec<Ident>,
    /// REPLICA ON … (or, for a distributed group, its member availability groups).
    pub replicas: Vec<ReplicaSpec>,
}

impl CreateAvailabilityGroup {
    pub fn cluster_type(&self) -> Option<String> {
        find_opt(&self.options, "CLUSTER_TYPE").and_then(|o| o.word())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AgAction {
    /// JOIN, or JOIN AVAILABILITY GROUP ON … for the second side of a distributed group.
    Join {
        groups: Vec<ReplicaSpec>,
        options: Vec<Opt>,
    },
    GrantCreateAnyDatabase,
    DenyCreateAnyDatabase,
    ModifyAvailabilityGroup(Vec<ReplicaSpec>),
    ModifyReplica(ReplicaSpec),
    AddReplica(Vec<ReplicaSpec>),
    RemoveReplica(String),
    AddDatabase(Vec<Ident>),
    RemoveDatabase(Vec<Ident>),
    Failover,
    ForceFailoverAllowDataLoss,
    /// SET (ROLE = SECONDARY) and other SET (…) options.
    Set(Vec<Opt>),
    Offline,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterDatabaseAction {
    SetHadrAvailabilityGroup(Ident),
    SetHadrOff,
    SetHadrResume,
    SetHadrSuspend,
    /// FULL | SIMPLE | BULK_LOGGED
    SetRecovery(String),
    /// Any other SET list: SINGLE_USER, ONLINE, READ_ONLY, COMPATIBILITY_LEVEL = 150, … with the optional
    /// termination clause (ROLLBACK IMMEDIATE, NO_WAIT, ROLLBACK AFTER n).
    Set {
        options: Vec<Opt>,
        termination: Option<String>,
    },
    ModifyName(Ident),
    Collate(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DbName {
    Name(Ident),
    Variable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Disk,
    Url,
    Tape,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub kind: DeviceKind,
    pub path: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    Database,
    Log,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub kind: BackupKind,
    pub database: DbName,
    pub devices: Vec<Device>,
    /// WITH options (COPY_ONLY, INIT, NAME = …, STATS = n, COMPRESSION, …).
    pub options: Vec<Opt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreKind {
    Database,
    Log,
    HeaderOnly,
    VerifyOnly,
    FileListOnly,
    LabelOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub kind: RestoreKind,
    pub database: Option<DbName>,
    pub devices: Vec<Device>,
    /// WITH options (NORECOVERY, RECOVERY, REPLACE, STATS, STOPAT = …, FILE = n, …).
    pub options: Vec<Opt>,
    /// MOVE 'logical' TO 'physical'
    pub moves: Vec<(Expr, Expr)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterLoginAction {
    Enable,
    Disable,
    With(Vec<Opt>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Admin {
    CreateMasterKey {
        password: Option<Expr>,
    },
    OpenMasterKey {
        password: Expr,
    },
    CloseMasterKey,
    AlterMasterKey(AlterMasterKey),
    DropMasterKey,
    CreateCertificate(Box<CreateCertificate>),
    BackupCertificate(Box<BackupCertificate>),
    DropCertificate {
        name: Ident,
    },
    CreateEndpoint(Box<EndpointDef>),
    AlterEndpoint(Box<EndpointDef>),
    DropEndpoint {
        name: Ident,
    },
    CreateAvailabilityGroup(Box<CreateAvailabilityGroup>),
    AlterAvailabilityGroup {
        name: Ident,
        action: Box<AgAction>,
    },
    DropAvailabilityGroup {
        name: Ident,
    },
    CreateDatabase {
        name: Ident,
        collation: Option<String>,
        options: Vec<Opt>,
    },
    /// `name` is None for ALTER DATABASE CURRENT.
    AlterDatabase {
        name: Option<Ident>,
        action: AlterDatabaseAction,
    },
    DropDatabase {
        if_exists: bool,
        names: Vec<Ident>,
    },
    Backup(Box<Backup>),
    Restore(Box<Restore>),
    /// PASSWORD is lifted out of the options; `source` is WINDOWS / CERTIFICATE name for FROM logins.
    CreateLogin {
        name: Ident,
        password: Option<Expr>,
        options: Vec<Opt>,
        source: Option<String>,
    },
    AlterLogin {
        name: Ident,
        action: AlterLoginAction,
    },
    DropLogin {
        name: Ident,
    },
    /// DBCC name [(args)] [WITH options]; bare words in args (LOGSPACE) arrive as Expr::Column.
    Dbcc {
        name: String,
        args: Vec<Expr>,
        with: Vec<String>,
    },
    Checkpoint(Option<Expr>),
    Kill(Expr),
    /// RECONFIGURE [WITH OVERRIDE] (after sp_configure).
    Reconfigure {
        with_override: bool,
    },
    /// SHUTDOWN [WITH NOWAIT]
    Shutdown {
        nowait: bool,
    },
    /// CREATE USER name [FOR|FROM LOGIN login | WITHOUT LOGIN] [WITH options]
    CreateUser {
        name: Ident,
        login: Option<Ident>,
        without_login: bool,
        options: Vec<Opt>,
    },
    DropUser {
        if_exists: bool,
        name: Ident,
    },
    /// `ALTER [SERVER] ROLE role ADD|DROP MEMBER principal`
    AlterRoleMember {
        server: bool,
        role: Ident,
        add: bool,
        member: Ident,
    },
    /// BACKUP MASTER KEY TO FILE = … ENCRYPTION BY PASSWORD = …
    BackupMasterKey {
        file: Expr,
        password: Expr,
    },
}

impl<'a> Parser<'a> {
    /// Entry point for statements starting with CREATE/ALTER/DROP (non-DDL), BACKUP, RESTORE, DBCC, CHECKPOINT,
    /// KILL, OPEN, CLOSE.
    pub(crate) fn parse_admin_statement(&mut self) -> Result<Admin> {
        let w = self.parse_any_word()?;
        match w.as_str() {
            "CREATE" => self.parse_admin_create(),
            "ALTER" => self.parse_admin_alter(),
            "DROP" => self.parse_admin_drop(),
            "BACKUP" => self.parse_backup(),
            "RESTORE" => self.parse_restore(),
            "OPEN" => {
                self.expect_kw("MASTER")?;
                self.expect_kw("KEY")?;
                self.expect_kw("DECRYPTION")?;
                self.expect_kw("BY")?;
                self.expect_kw("PASSWORD")?;
                self.expect_op("=")?;
                Ok(Admin::OpenMasterKey {
                    password: self.parse_value()?,
                })
            }
            "CLOSE" => {
                self.expect_kw("MASTER")?;
                self.expect_kw("KEY")?;
                Ok(Admin::CloseMasterKey)
            }
            "DBCC" => self.parse_dbcc(),
            "RECONFIGURE" => {
                let with_override = if self.is_kw("WITH") && self.is_kw_at(1, "OVERRIDE") {
                    self.next();
                    self.next();
                    true
                } else {
                    false
                };
                Ok(Admin::Reconfigure { with_override })
            }
            "SHUTDOWN" => {
                let nowait = if self.is_kw("WITH") && self.is_kw_at(1, "NOWAIT") {
                    self.next();
                    self.next();
                    true
                } else {
                    false
                };
                Ok(Admin::Shutdown { nowait })
            }
            "CHECKPOINT" => {
                let d = if matches!(self.peek().tok, Tok::Int(_)) {
                    Some(self.parse_value()?)
                } else {
                    None
                };
                Ok(Admin::Checkpoint(d))
            }
            "KILL" => {
                let e = self.parse_value()?;
                if self.is_kw("WITH") && self.is_kw_at(1, "STATUSONLY") {
                    self.next();
                    self.next();
                }
                Ok(Admin::Kill(e))
            }
            _ => {
                self.pos -= 1;
                Err(self.error_here())
            }
        }
    }

    /// A literal, @variable or signed number: what SQL Server accepts as an option value.
    pub(crate) fn parse_value(&mut self) -> Result<Expr> {
        match &self.peek().tok {
            Tok::Str(_)
            | Tok::NStr(_)
            | Tok::Int(_)
            | Tok::Decimal(_)
            | Tok::Float(_)
            | Tok::Binary(_)
            | Tok::Var(_)
            | Tok::Money(_)
            | Tok::Op("-")
            | Tok::Op("+") => self.parse_unary(),
            _ => Err(self.error_here()),
        }
    }

    fn expect_eq(&mut self) -> Result<()> {
        self.expect_op("=")
    }

    /// A name that may be a bracketed identifier or a bare word (keywords allowed where SQL Server allows
    /// them, e.g. certificate and endpoint names are regular identifiers).
    fn parse_name(&mut self) -> Result<Ident> {
        self.parse_ident()
    }

    /// `N'name'` or `'name'` or an identifier: AG / replica names may be written either way.
    fn parse_string_or_name(&mut self) -> Result<String> {
        match &self.peek().tok {
            Tok::Str(s) | Tok::NStr(s) => {
                let v = s.clone();
                self.next();
                Ok(v)
            }
            _ => Ok(self.parse_ident()?.value),
        }
    }

    fn parse_admin_create(&mut self) -> Result<Admin> {
        let w = self.parse_any_word()?;
        match w.as_str() {
            "MASTER" => {
                self.expect_kw("KEY")?;
                let password = if self.eat_kw("ENCRYPTION") {
                    self.expect_kw("BY")?;
                    self.expect_kw("PASSWORD")?;
                    self.expect_eq()?;
                    Some(self.parse_value()?)
                } else {
                    None
                };
                Ok(Admin::CreateMasterKey { password })
            }
            "CERTIFICATE" => self.parse_create_certificate(),
            "ENDPOINT" => Ok(Admin::CreateEndpoint(Box::new(self.parse_endpoint(true)?))),
            "AVAILABILITY" => {
                self.expect_kw("GROUP")?;
                self.parse_create_ag()
            }
            "DATABASE" => {
                let name = self.parse_name()?;
                if self.is_kw("ON") || self.is_kw("CONTAINMENT") || self.is_kw("AS") {
                    return Err(SqlError::unsupported(
                        "CREATE DATABASE with file or snapshot clauses",
                        self.line(),
                    ));
                }
                let collation = if self.eat_kw("COLLATE") {
                    Some(self.parse_any_word()?)
                } else {
                    None
                };
                let options = if self.eat_kw("WITH") {
                    self.parse_top_options()?
                } else {
                    vec![]
                };
                Ok(Admin::CreateDatabase {
                    name,
                    collation,
                    options,
                })
            }
            "USER" => {
                let name = self.parse_name()?;
                let mut login = None;
                let mut without_login = false;
                if (self.is_kw("FOR") || self.is_kw("FROM")) && self.is_kw_at(1, "LOGIN") {
                    self.next();
                    self.next();
                    login = Some(self.parse_name()?);
                } else if self.is_kw("WITHOUT") && self.is_kw_at(1, "LOGIN") {
                    self.next();
                    self.next();
                    without_login = true;
                }
                let options = if self.eat_kw("WITH") {
                    self.parse_top_options()?
                } else {
                    vec![]
                };
                Ok(Admin::CreateUser {
                    name,
                    login,
                    without_login,
                    options,
                })
            }
            "LOGIN" => {
                let name = self.parse_name()?;
                if self.eat_kw("FROM") {
                    let src = self.parse_any_word()?;
                    let source = if src == "CERTIFICATE" {
                        format!("CERTIFICATE {}", self.parse_name()?.value)
                    } else {
                        src
                    };
                    let options = if self.eat_kw("WITH") {
                        self.parse_top_options()?
                    } else {
                        vec![]
                    };
                    return Ok(Admin::CreateLogin {
                        name,
                        password: None,
                        options,
                        source: Some(source),
                    });
                }
                self.expect_kw("WITH")?;
                let mut options = self.parse_login_options()?;
                let password = options
                    .iter()
                    .position(|o| o.name == "PASSWORD")
                    .and_then(|i| options.remove(i).value)
                    .and_then(|v| match v {
                        OptValue::Expr(e) => Some(e),
                        _ => None,
                    });
                Ok(Admin::CreateLogin {
                    name,
                    password,
                    options,
                    source: None,
                })
            }
            _ => {
                self.pos -= 1;
                Err(SqlError::unsupported(&format!("CREATE {}", w), self.line()))
            }
        }
    }

    /// WITH options of CREATE/ALTER LOGIN: PASSWORD = 'x' [HASHED] [MUST_CHANGE], CHECK_POLICY = OFF, …
    fn parse_login_options(&mut self) -> Result<Vec<Opt>> {
        let mut opts = Vec::new();
        loop {
            let name = self.parse_any_word()?;
            self.expect_eq()?;
            let value = match &self.peek().tok {
                Tok::Word(w) => {
                    let v = w.to_ascii_uppercase();
                    self.next();
                    OptValue::Word(v)
                }
                Tok::QuotedId(w) => {
                    let v = w.clone();
                    self.next();
                    OptValue::Word(v)
                }
                _ => OptValue::Expr(self.parse_value()?),
            };
            opts.push(Opt {
                name,
                value: Some(value),
            });
            while self.is_kw("HASHED") || self.is_kw("MUST_CHANGE") || self.is_kw("UNLOCK") {
                let flag = self.parse_any_word()?;
                opts.push(Opt {
                    name: flag,
                    value: None,
                });
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(opts)
    }

    fn parse_create_certificate(&mut self) -> Result<Admin> {
        let name = self.parse_name()?;
        let authorization = if self.eat_kw("AUTHORIZATION") {
            Some(self.parse_name()?)
        } else {
            None
        };
        let mut c = CreateCertificate {
            name,
            authorization,
            source: CertSource::Generate,
            subject: None,
            start_date: None,
            expiry_date: None,
            encryption_password: None,
            private_key: vec![],
            active_for_begin_dialog: None,
        };
        if self.eat_kw("FROM") {
            let w = self.parse_any_word()?;
            match w.as_str() {
                "BINARY" => {
                    self.expect_eq()?;
                    c.source = CertSource::Binary(self.parse_value()?);
                }
                "FILE" => {
                    self.expect_eq()?;
                    c.source = CertSource::File(self.parse_value()?);
                }
                _ => {
                    return Err(SqlError::unsupported(
                        &format!("CREATE CERTIFICATE FROM {}", w),
                        self.line(),
                    ))
                }
            }
            if self.is_kw("WITH") {
                self.next();
                loop {
                    if self.is_kw("PRIVATE") {
                        self.next();
                        self.expect_kw("KEY")?;
                        c.private_key = self.parse_paren_options()?;
                    } else if self.is_kw("FORMAT") {
                        self.next();
                        self.expect_eq()?;
                        self.parse_value()?;
                    } else {
                        return Err(self.error_here());
                    }
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
            }
        } else {
            // [ENCRYPTION BY PASSWORD = 'pw'] WITH SUBJECT = …, START_DATE = …, EXPIRY_DATE = …
            let mut saw_with = false;
            loop {
                if self.is_kw("ENCRYPTION") {
                    self.next();
                    self.expect_kw("BY")?;
                    self.expect_kw("PASSWORD")?;
                    self.expect_eq()?;
                    c.encryption_password = Some(self.parse_value()?);
                } else if self.is_kw("WITH") && !saw_with {
                    self.next();
                    saw_with = true;
                    loop {
                        let opt = self.parse_any_word()?;
                        self.expect_eq()?;
                        let v = self.parse_value()?;
                        match opt.as_str() {
                            "SUBJECT" => c.subject = Some(v),
                            "START_DATE" => c.start_date = Some(v),
                            "EXPIRY_DATE" => c.expiry_date = Some(v),
                            _ => {
                                self.pos -= 3;
                                return Err(self.error_here());
                            }
                        }
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                } else {
                    break;
                }
            }
            if c.subject.is_none() {
                return Err(self.error_here());
            }
        }
        if self.is_kw("ACTIVE") {
            self.next();
            self.expect_kw("FOR")?;
            self.expect_kw("BEGIN_DIALOG")?;
            self.expect_eq()?;
            c.active_for_begin_dialog = Some(
                self.eat_kw("ON") || {
                    self.expect_kw("OFF")?;
                    false
                },
            );
        }
        Ok(Admin::CreateCertificate(Box::new(c)))
    }

    /// ( NAME [words] = value, … ) with multi-word names: PRIVATE KEY options, PRIMARY_ROLE(…), etc.
    pub(crate) fn parse_paren_options(&mut self) -> Result<Vec<Opt>> {
        self.enter_n(4)?;
        let r = self.parse_paren_options_inner();
        self.leave_n(4);
        r
    }

    fn parse_paren_options_inner(&mut self) -> Result<Vec<Opt>> {
        self.expect(&Tok::LParen)?;
        let mut opts = Vec::new();
        if self.eat(&Tok::RParen) {
            return Ok(opts);
        }
        loop {
            let mut words = vec![self.parse_any_word()?];
            while let Tok::Word(_) = &self.peek().tok {
                words.push(self.parse_any_word()?);
            }
            let name = words.join(" ");
            let value = if self.eat_op("=") {
                Some(self.parse_opt_value_in_parens()?)
            } else if self.peek().tok == Tok::LParen {
                Some(OptValue::List(self.parse_paren_options()?))
            } else {
                None
            };
            opts.push(Opt { name, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        Ok(opts)
    }

    /// Inside parentheses a value may be several words (`WINDOWS NEGOTIATE`), a literal, or a list.
    fn parse_opt_value_in_parens(&mut self) -> Result<OptValue> {
        match &self.peek().tok {
            Tok::Word(_) | Tok::QuotedId(_) => {
                let mut words = Vec::new();
                loop {
                    match &self.peek().tok {
                        Tok::Word(w) => {
                            words.push(w.to_ascii_uppercase());
                            self.next();
                        }
                        Tok::QuotedId(w) => {
                            words.push(w.clone());
                            self.next();
                        }
                        _ => break,
                    }
                }
                Ok(OptValue::Word(words.join(" ")))
            }
            Tok::LParen => Ok(OptValue::List(self.parse_paren_options()?)),
            _ => Ok(OptValue::Expr(self.parse_value()?)),
        }
    }

    /// Top-level WITH lists (BACKUP, RESTORE, CREATE DATABASE): `NAME [= value]` items, one word per name and a
    /// single-token value, so the list cannot run into the next statement.
    pub(crate) fn parse_top_options(&mut self) -> Result<Vec<Opt>> {
        let mut opts = Vec::new();
        loop {
            let name = self.parse_any_word()?;
            let value = if self.eat_op("=") {
                Some(match &self.peek().tok {
                    Tok::Word(w)
                        if !is_reserved(w)
                            || w.eq_ignore_ascii_case("ON")
                            || w.eq_ignore_ascii_case("OFF") =>
                    {
                        let v = w.to_ascii_uppercase();
                        self.next();
                        OptValue::Word(v)
                    }
                    Tok::QuotedId(w) => {
                        let v = w.clone();
                        self.next();
                        OptValue::Word(v)
                    }
                    _ => OptValue::Expr(self.parse_value()?),
                })
            } else if self.peek().tok == Tok::LParen {
                Some(OptValue::List(self.parse_paren_options()?))
            } else {
                None
            };
            opts.push(Opt { name, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(opts)
    }

    fn parse_endpoint(&mut self, create: bool) -> Result<EndpointDef> {
        let name = self.parse_name()?;
        let mut ep = EndpointDef {
            name,
            authorization: None,
            state: None,
            listener_port: None,
            listener_ip: None,
            database_mirroring: false,
            role: None,
            authentication: None,
            encryption: None,
        };
        if self.eat_kw("AUTHORIZATION") {
            ep.authorization = Some(self.parse_name()?);
        }
        if self.eat_kw("STATE") {
            self.expect_eq()?;
            let s = self.parse_any_word()?;
            ep.state = Some(match s.as_str() {
                "STARTED" => EndpointState::Started,
                "STOPPED" => EndpointState::Stopped,
                "DISABLED" => EndpointState::Disabled,
                _ => {
                    self.pos -= 1;
                    return Err(self.error_here());
                }
            });
        }
        if self.eat_kw("AS") {
            let proto = self.parse_any_word()?;
            if proto != "TCP" {
                return Err(SqlError::unsupported(
                    &format!("endpoint protocol {}", proto),
                    self.line(),
                ));
            }
            self.expect(&Tok::LParen)?;
            loop {
                let opt = self.parse_any_word()?;
                self.expect_eq()?;
                match opt.as_str() {
                    "LISTENER_PORT" => ep.listener_port = Some(self.parse_value()?),
                    "LISTENER_IP" => {
                        if self.eat_kw("ALL") {
                            ep.listener_ip = Some(ListenerIp::All);
                        } else if self.peek().tok == Tok::LParen {
                            // The address is not a token sequence we lex (10.0.0.4 or ::1): take the raw text.
                            let open = self.next();
                            let start = open.end;
                            let mut end = start;
                            loop {
                                let t = self.next();
                                match t.tok {
                                    Tok::RParen => break,
                                    Tok::Eof => return Err(self.error_here()),
                                    _ => end = t.end,
                                }
                            }
                            let raw = self.src[start..end.max(start)].trim();
                            let raw = raw
                                .strip_prefix('N')
                                .filter(|r| r.starts_with('\''))
                                .unwrap_or(raw);
                            let addr = raw.trim_matches('\'').to_string();
                            if addr.is_empty() {
                                return Err(self.error_here());
                            }
                            ep.listener_ip = Some(ListenerIp::Address(addr));
                        } else {
                            return Err(self.error_here());
                        }
                    }
                    _ => {
                        self.pos -= 2;
                        return Err(self.error_here());
                    }
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen)?;
        } else if create {
            return Err(self.error_here());
        }
        if self.eat_kw("FOR") {
            let payload = self.parse_any_word()?;
            if payload != "DATABASE_MIRRORING" {
                return Err(SqlError::unsupported(
                    &format!("endpoint type {}", payload),
                    self.line(),
                ));
            }
            ep.database_mirroring = true;
            self.expect(&Tok::LParen)?;
            if !self.eat(&Tok::RParen) {
                loop {
                    let opt = self.parse_any_word()?;
                    self.expect_eq()?;
                    match opt.as_str() {
                        "ROLE" => {
                            let r = self.parse_any_word()?;
                            ep.role = Some(match r.as_str() {
                                "ALL" => MirroringRole::All,
                                "PARTNER" => MirroringRole::Partner,
                                "WITNESS" => MirroringRole::Witness,
                                _ => {
                                    self.pos -= 1;
                                    return Err(self.error_here());
                                }
                            });
                        }
                        "AUTHENTICATION" => ep.authentication = Some(self.parse_endpoint_auth()?),
                        "ENCRYPTION" => ep.encryption = Some(self.parse_endpoint_encryption()?),
                        _ => {
                            self.pos -= 2;
                            return Err(self.error_here());
                        }
                    }
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(&Tok::RParen)?;
            }
        } else if create {
            return Err(self.error_here());
        }
        Ok(ep)
    }

    fn parse_windows_kind(&mut self) -> WindowsAuth {
        if self.eat_kw("NTLM") {
            WindowsAuth::Ntlm
        } else if self.eat_kw("KERBEROS") {
            WindowsAuth::Kerberos
        } else {
            self.eat_kw("NEGOTIATE");
            WindowsAuth::Negotiate
        }
    }

    fn parse_endpoint_auth(&mut self) -> Result<EndpointAuth> {
        let mut auth = EndpointAuth {
            windows: None,
            certificate: None,
            certificate_first: false,
        };
        if self.eat_kw("WINDOWS") {
            auth.windows = Some(self.parse_windows_kind());
            if self.eat_kw("CERTIFICATE") {
                auth.certificate = Some(self.parse_name()?);
            }
        } else if self.eat_kw("CERTIFICATE") {
            auth.certificate = Some(self.parse_name()?);
            if self.eat_kw("WINDOWS") {
                auth.windows = Some(self.parse_windows_kind());
                auth.certificate_first = true;
            }
        } else {
            return Err(self.error_here());
        }
        Ok(auth)
    }

    fn parse_endpoint_encryption(&mut self) -> Result<EndpointEncryption> {
        let m = self.parse_any_word()?;
        let mode = match m.as_str() {
            "DISABLED" => EncryptionMode::Disabled,
            "SUPPORTED" => EncryptionMode::Supported,
            "REQUIRED" => EncryptionMode::Required,
            _ => {
                self.pos -= 1;
                return Err(self.error_here());
            }
        };
        let mut algorithms = Vec::new();
        if self.eat_kw("ALGORITHM") {
            loop {
                if self.eat_kw("AES") {
                    algorithms.push(EncryptionAlgorithm::Aes);
                } else if self.eat_kw("RC4") {
                    algorithms.push(EncryptionAlgorithm::Rc4);
                } else {
                    break;
                }
            }
            if algorithms.is_empty()
                || algorithms.len() > 2
                || (algorithms.len() == 2 && algorithms[0] == algorithms[1])
            {
                return Err(self.error_here());
            }
        }
        Ok(EndpointEncryption { mode, algorithms })
    }

    /// `N'name' WITH (…) [, N'name2' WITH (…)]`
    fn parse_replica_specs(&mut self) -> Result<Vec<ReplicaSpec>> {
        let mut out = Vec::new();
        loop {
            out.push(self.parse_replica_spec()?);
            if !(self.peek().tok == Tok::Comma
                && matches!(
                    self.peek_at(1).tok,
                    Tok::Str(_) | Tok::NStr(_) | Tok::QuotedId(_)
                ))
            {
                break;
            }
            self.next();
        }
        Ok(out)
    }

    fn parse_replica_spec(&mut self) -> Result<ReplicaSpec> {
        let name = self.parse_string_or_name()?;
        let options = if self.eat_kw("WITH") {
            self.parse_paren_options()?
        } else {
            vec![]
        };
        let mut r = ReplicaSpec {
            name,
            endpoint_url: None,
            listener_url: None,
            availability_mode: None,
            failover_mode: None,
            seeding_mode: None,
            session_timeout: None,
            options: options.clone(),
        };
        let line = self.line();
        for o in &options {
            let w = o.word();
            let bad = || SqlError::syntax_near(&o.word().unwrap_or_else(|| o.name.clone()), line);
            match o.name.as_str() {
                "ENDPOINT_URL" => r.endpoint_url = w,
                "LISTENER_URL" => r.listener_url = w,
                "AVAILABILITY_MODE" => {
                    r.availability_mode = Some(match w.as_deref() {
                        Some("SYNCHRONOUS_COMMIT") => AvailabilityMode::SynchronousCommit,
                        Some("ASYNCHRONOUS_COMMIT") => AvailabilityMode::AsynchronousCommit,
                        Some("CONFIGURATION_ONLY") => AvailabilityMode::ConfigurationOnly,
                        _ => return Err(bad()),
                    })
                }
                "FAILOVER_MODE" => {
                    r.failover_mode = Some(match w.as_deref() {
                        Some("AUTOMATIC") => FailoverMode::Automatic,
                        Some("MANUAL") => FailoverMode::Manual,
                        Some("EXTERNAL") => FailoverMode::External,
                        _ => return Err(bad()),
                    })
                }
                "SEEDING_MODE" => {
                    r.seeding_mode = Some(match w.as_deref() {
                        Some("AUTOMATIC") => SeedingMode::Automatic,
                        Some("MANUAL") => SeedingMode::Manual,
                        _ => return Err(bad()),
                    })
                }
                "SESSION_TIMEOUT" => {
                    r.session_timeout = Some(w.and_then(|s| s.parse().ok()).ok_or_else(bad)?);
                }
                _ => {}
            }
        }
        Ok(r)
    }

    fn parse_db_ident_list(&mut self) -> Result<Vec<Ident>> {
        let mut dbs = vec![self.parse_name()?];
        while self.peek().tok == Tok::Comma
            && matches!(self.peek_at(1).tok, Tok::QuotedId(_) | Tok::Word(_))
        {
            if let Tok::Word(w) = &self.peek_at(1).tok {
                if is_reserved(w) {
                    break;
                }
            }
            self.next();
            dbs.push(self.parse_name()?);
        }
        Ok(dbs)
    }

    fn parse_create_ag(&mut self) -> Result<Admin> {
        let name = self.parse_name()?;
        let mut options = Vec::new();
        if self.is_kw("WITH") {
            self.next();
            options = self.parse_paren_options()?;
        }
        let distributed = options.iter().any(|o| o.name == "DISTRIBUTED");
        let mut databases = Vec::new();
        let replicas;
        if distributed {
            self.expect_kw("AVAILABILITY")?;
            self.expect_kw("GROUP")?;
            self.expect_kw("ON")?;
            replicas = self.parse_replica_specs()?;
        } else {
            self.expect_kw("FOR")?;
            if self.eat_kw("DATABASE") {
                databases = self.parse_db_ident_list()?;
            }
            self.expect_kw("REPLICA")?;
            self.expect_kw("ON")?;
            replicas = self.parse_replica_specs()?;
            if self.is_kw("LISTENER") {
                return Err(SqlError::unsupported(
                    "availability group LISTENER",
                    self.line(),
                ));
            }
        }
        Ok(Admin::CreateAvailabilityGroup(Box::new(
            CreateAvailabilityGroup {
                name,
                options,
                distributed,
                databases,
                replicas,
            },
        )))
    }

    fn parse_ag_action(&mut self) -> Result<AgAction> {
        let w = self.parse_any_word()?;
        Ok(match w.as_str() {
            "JOIN" => {
                let mut groups = Vec::new();
                let mut options = Vec::new();
                if self.is_kw("AVAILABILITY") {
                    self.next();
                    self.expect_kw("GROUP")?;
                    self.expect_kw("ON")?;
                    groups = self.parse_replica_specs()?;
                } else if self.is_kw("WITH") {
                    self.next();
                    options = self.parse_paren_options()?;
                }
                AgAction::Join { groups, options }
            }
            "GRANT" | "DENY" => {
                self.expect_kw("CREATE")?;
                self.expect_kw("ANY")?;
                self.expect_kw("DATABASE")?;
                if w == "GRANT" {
                    AgAction::GrantCreateAnyDatabase
                } else {
                    AgAction::DenyCreateAnyDatabase
                }
            }
            "MODIFY" => {
                if self.eat_kw("AVAILABILITY") {
                    self.expect_kw("GROUP")?;
                    self.expect_kw("ON")?;
                    AgAction::ModifyAvailabilityGroup(self.parse_replica_specs()?)
                } else {
                    self.expect_kw("REPLICA")?;
                    self.expect_kw("ON")?;
                    AgAction::ModifyReplica(self.parse_replica_spec()?)
                }
            }
            "ADD" | "REMOVE" => {
                if self.eat_kw("DATABASE") {
                    let dbs = self.parse_db_ident_list()?;
                    if w == "ADD" {
                        AgAction::AddDatabase(dbs)
                    } else {
                        AgAction::RemoveDatabase(dbs)
                    }
                } else if self.eat_kw("REPLICA") {
                    self.expect_kw("ON")?;
                    if w == "ADD" {
                        AgAction::AddReplica(self.parse_replica_specs()?)
                    } else {
                        AgAction::RemoveReplica(self.parse_string_or_name()?)
                    }
                } else {
                    return Err(SqlError::unsupported(
                        &format!("ALTER AVAILABILITY GROUP {} …", w),
                        self.line(),
                    ));
                }
            }
            "FAILOVER" => AgAction::Failover,
            "FORCE_FAILOVER_ALLOW_DATA_LOSS" => AgAction::ForceFailoverAllowDataLoss,
            "SET" => AgAction::Set(self.parse_paren_options()?),
            "OFFLINE" => AgAction::Offline,
            _ => {
                return Err(SqlError::unsupported(
                    &format!("ALTER AVAILABILITY GROUP … {}", w),
                    self.line(),
                ))
            }
        })
    }

    fn parse_admin_alter(&mut self) -> Result<Admin> {
        let w = self.parse_any_word()?;
        match w.as_str() {
            "MASTER" => {
                self.expect_kw("KEY")?;
                let force = self.eat_kw("FORCE");
                if self.eat_kw("REGENERATE") {
                    self.expect_kw("WITH")?;
                    self.expect_kw("ENCRYPTION")?;
                    self.expect_kw("BY")?;
                    self.expect_kw("PASSWORD")?;
                    self.expect_eq()?;
                    return Ok(Admin::AlterMasterKey(AlterMasterKey::Regenerate {
                        password: self.parse_value()?,
                        force,
                    }));
                }
                let add = if self.eat_kw("ADD") {
                    true
                } else if self.eat_kw("DROP") {
                    false
                } else {
                    return Err(self.error_here());
                };
                self.expect_kw("ENCRYPTION")?;
                self.expect_kw("BY")?;
                if self.eat_kw("SERVICE") {
                    self.expect_kw("MASTER")?;
                    self.expect_kw("KEY")?;
                    return Ok(Admin::AlterMasterKey(if add {
                        AlterMasterKey::AddEncryptionByServiceMasterKey
                    } else {
                        AlterMasterKey::DropEncryptionByServiceMasterKey
                    }));
                }
                self.expect_kw("PASSWORD")?;
                self.expect_eq()?;
                let p = self.parse_value()?;
                Ok(Admin::AlterMasterKey(if add {
                    AlterMasterKey::AddEncryptionByPassword(p)
                } else {
                    AlterMasterKey::DropEncryptionByPassword(p)
                }))
            }
            "ENDPOINT" => Ok(Admin::AlterEndpoint(Box::new(self.parse_endpoint(false)?))),
            "AVAILABILITY" => {
                self.expect_kw("GROUP")?;
                let name = self.parse_name()?;
                let action = self.parse_ag_action()?;
                Ok(Admin::AlterAvailabilityGroup {
                    name,
                    action: Box::new(action),
                })
            }
            "DATABASE" => {
                let name = if self.eat_kw("CURRENT") {
                    None
                } else {
                    Some(self.parse_name()?)
                };
                let action = if self.eat_kw("SET") {
                    if self.eat_kw("HADR") {
                        if self.eat_kw("AVAILABILITY") {
                            self.expect_kw("GROUP")?;
                            self.expect_eq()?;
                            AlterDatabaseAction::SetHadrAvailabilityGroup(self.parse_name()?)
                        } else if self.eat_kw("OFF") {
                            AlterDatabaseAction::SetHadrOff
                        } else if self.eat_kw("RESUME") {
                            AlterDatabaseAction::SetHadrResume
                        } else if self.eat_kw("SUSPEND") {
                            AlterDatabaseAction::SetHadrSuspend
                        } else {
                            return Err(self.error_here());
                        }
                    } else if self.eat_kw("RECOVERY") {
                        let m = self.parse_any_word()?;
                        if !["FULL", "SIMPLE", "BULK_LOGGED"].contains(&m.as_str()) {
                            self.pos -= 1;
                            return Err(self.error_here());
                        }
                        AlterDatabaseAction::SetRecovery(m)
                    } else {
                        self.parse_alter_db_set()?
                    }
                } else if self.eat_kw("MODIFY") {
                    self.expect_kw("NAME")?;
                    self.expect_eq()?;
                    AlterDatabaseAction::ModifyName(self.parse_name()?)
                } else if self.eat_kw("COLLATE") {
                    AlterDatabaseAction::Collate(self.parse_any_word()?)
                } else {
                    return Err(SqlError::unsupported(
                        "this ALTER DATABASE form",
                        self.line(),
                    ));
                };
                Ok(Admin::AlterDatabase { name, action })
            }
            "ROLE" | "SERVER" => {
                let server = w == "SERVER";
                if server {
                    self.expect_kw("ROLE")?;
                }
                let role = self.parse_name()?;
                let add = if self.eat_kw("ADD") {
                    true
                } else if self.eat_kw("DROP") {
                    false
                } else {
                    return Err(SqlError::unsupported("this ALTER ROLE form", self.line()));
                };
                self.expect_kw("MEMBER")?;
                let member = self.parse_name()?;
                Ok(Admin::AlterRoleMember {
                    server,
                    role,
                    add,
                    member,
                })
            }
            "LOGIN" => {
                let name = self.parse_name()?;
                let action = if self.eat_kw("ENABLE") {
                    AlterLoginAction::Enable
                } else if self.eat_kw("DISABLE") {
                    AlterLoginAction::Disable
                } else {
                    self.expect_kw("WITH")?;
                    AlterLoginAction::With(self.parse_login_options()?)
                };
                Ok(Admin::AlterLogin { name, action })
            }
            _ => {
                self.pos -= 1;
                Err(SqlError::unsupported(&format!("ALTER {}", w), self.line()))
            }
        }
    }

    fn parse_alter_db_set(&mut self) -> Result<AlterDatabaseAction> {
        let mut options = Vec::new();
        loop {
            let name = self.parse_any_word()?;
            let value = if self.eat_op("=") {
                Some(match &self.peek().tok {
                    Tok::Word(_) => OptValue::Word(self.parse_any_word()?),
                    _ => OptValue::Expr(self.parse_value()?),
                })
            } else {
                match &self.peek().tok {
                    Tok::Word(w)
                        if w.eq_ignore_ascii_case("ON")
                            || w.eq_ignore_ascii_case("OFF")
                            || (!is_reserved(w) && !w.eq_ignore_ascii_case("WITH")) =>
                    {
                        Some(OptValue::Word(self.parse_any_word()?))
                    }
                    Tok::Int(_) => Some(OptValue::Expr(self.parse_value()?)),
                    Tok::LParen => Some(OptValue::List(self.parse_paren_options()?)),
                    _ => None,
                }
            };
            options.push(Opt { name, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        let mut termination = None;
        if self.eat_kw("WITH") {
            let w = self.parse_any_word()?;
            termination = Some(match w.as_str() {
                "NO_WAIT" => w,
                "ROLLBACK" => {
                    if self.eat_kw("IMMEDIATE") {
                        "ROLLBACK IMMEDIATE".to_string()
                    } else {
                        self.expect_kw("AFTER")?;
                        let n = self.parse_signed_int()?;
                        self.eat_kw("SECONDS");
                        format!("ROLLBACK AFTER {}", n)
                    }
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.error_here());
                }
            });
        }
        Ok(AlterDatabaseAction::Set {
            options,
            termination,
        })
    }

    fn parse_admin_drop(&mut self) -> Result<Admin> {
        let w = self.parse_any_word()?;
        match w.as_str() {
            "MASTER" => {
                self.expect_kw("KEY")?;
                Ok(Admin::DropMasterKey)
            }
            "CERTIFICATE" => Ok(Admin::DropCertificate {
                name: self.parse_name()?,
            }),
            "ENDPOINT" => Ok(Admin::DropEndpoint {
                name: self.parse_name()?,
            }),
            "AVAILABILITY" => {
                self.expect_kw("GROUP")?;
                Ok(Admin::DropAvailabilityGroup {
                    name: self.parse_name()?,
                })
            }
            "DATABASE" => {
                let if_exists = if self.is_kw("IF") {
                    self.next();
                    self.expect_kw("EXISTS")?;
                    true
                } else {
                    false
                };
                let mut names = vec![self.parse_name()?];
                while self.eat(&Tok::Comma) {
                    names.push(self.parse_name()?);
                }
                Ok(Admin::DropDatabase { if_exists, names })
            }
            "USER" => {
                let if_exists = if self.is_kw("IF") && self.is_kw_at(1, "EXISTS") {
                    self.next();
                    self.next();
                    true
                } else {
                    false
                };
                Ok(Admin::DropUser {
                    if_exists,
                    name: self.parse_name()?,
                })
            }
            "LOGIN" => Ok(Admin::DropLogin {
                name: self.parse_name()?,
            }),
            _ => {
                self.pos -= 1;
                Err(SqlError::unsupported(&format!("DROP {}", w), self.line()))
            }
        }
    }

    fn parse_db_name(&mut self) -> Result<DbName> {
        if let Tok::Var(v) = &self.peek().tok {
            let v = v.clone();
            self.next();
            return Ok(DbName::Variable(v));
        }
        Ok(DbName::Name(self.parse_name()?))
    }

    fn parse_devices(&mut self) -> Result<Vec<Device>> {
        let mut devices = Vec::new();
        loop {
            let w = self.parse_any_word()?;
            let kind = match w.as_str() {
                "DISK" => DeviceKind::Disk,
                "URL" => DeviceKind::Url,
                "TAPE" => DeviceKind::Tape,
                _ => {
                    self.pos -= 1;
                    return Err(self.error_here());
                }
            };
            self.expect_eq()?;
            devices.push(Device {
                kind,
                path: self.parse_value()?,
            });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(devices)
    }

    fn parse_backup(&mut self) -> Result<Admin> {
        let w = self.parse_any_word()?;
        match w.as_str() {
            "DATABASE" | "LOG" => {
                let database = self.parse_db_name()?;
                if self.is_kw("FILE")
                    || self.is_kw("FILEGROUP")
                    || self.is_kw("READ_WRITE_FILEGROUPS")
                {
                    return Err(SqlError::unsupported(
                        "file and filegroup backups",
                        self.line(),
                    ));
                }
                self.expect_kw("TO")?;
                let devices = self.parse_devices()?;
                if self.is_kw("MIRROR") {
                    return Err(SqlError::unsupported("BACKUP … MIRROR TO", self.line()));
                }
                let options = if self.eat_kw("WITH") {
                    self.parse_top_options()?
                } else {
                    vec![]
                };
                Ok(Admin::Backup(Box::new(Backup {
                    kind: if w == "LOG" {
                        BackupKind::Log
                    } else {
                        BackupKind::Database
                    },
                    database,
                    devices,
                    options,
                })))
            }
            "MASTER" => {
                self.expect_kw("KEY")?;
                self.expect_kw("TO")?;
                self.expect_kw("FILE")?;
                self.expect_eq()?;
                let file = self.parse_value()?;
                self.expect_kw("ENCRYPTION")?;
                self.expect_kw("BY")?;
                self.expect_kw("PASSWORD")?;
                self.expect_eq()?;
                let password = self.parse_value()?;
                Ok(Admin::BackupMasterKey { file, password })
            }
            "CERTIFICATE" => {
                let name = self.parse_name()?;
                self.expect_kw("TO")?;
                self.expect_kw("FILE")?;
                self.expect_eq()?;
                let file = self.parse_value()?;
                let mut private_key = Vec::new();
                if self.eat_kw("WITH") {
                    loop {
                        if self.eat_kw("PRIVATE") {
                            self.expect_kw("KEY")?;
                            private_key = self.parse_paren_options()?;
                        } else if self.eat_kw("FORMAT") {
                            self.expect_eq()?;
                            self.parse_value()?;
                        } else {
                            return Err(self.error_here());
                        }
                        if !self.eat(&Tok::Comma) {
                            break;
                        }
                    }
                }
                Ok(Admin::BackupCertificate(Box::new(BackupCertificate {
                    name,
                    file,
                    private_key,
                })))
            }
            _ => {
                self.pos -= 1;
                Err(SqlError::unsupported(&format!("BACKUP {}", w), self.line()))
            }
        }
    }

    fn parse_restore(&mut self) -> Result<Admin> {
        let w = self.parse_any_word()?;
        let kind = match w.as_str() {
            "DATABASE" => RestoreKind::Database,
            "LOG" => RestoreKind::Log,
            "HEADERONLY" => RestoreKind::HeaderOnly,
            "VERIFYONLY" => RestoreKind::VerifyOnly,
            "FILELISTONLY" => RestoreKind::FileListOnly,
            "LABELONLY" => RestoreKind::LabelOnly,
            _ => {
                self.pos -= 1;
                return Err(SqlError::unsupported(
                    &format!("RESTORE {}", w),
                    self.line(),
                ));
            }
        };
        let database = if matches!(kind, RestoreKind::Database | RestoreKind::Log) {
            Some(self.parse_db_name()?)
        } else {
            None
        };
        let mut devices = Vec::new();
        if self.eat_kw("FROM") {
            devices = self.parse_devices()?;
        } else if database.is_none() || !self.is_kw("WITH") {
            return Err(self.error_here());
        }
        let mut options = Vec::new();
        let mut moves = Vec::new();
        if self.eat_kw("WITH") {
            loop {
                if self.eat_kw("MOVE") {
                    let from = self.parse_value()?;
                    self.expect_kw("TO")?;
                    moves.push((from, self.parse_value()?));
                } else {
                    let name = self.parse_any_word()?;
                    let value = if self.eat_op("=") {
                        Some(OptValue::Expr(self.parse_value()?))
                    } else if self.peek().tok == Tok::LParen {
                        Some(OptValue::List(self.parse_paren_options()?))
                    } else {
                        None
                    };
                    // STOPATMARK = 'm' AFTER 'time'
                    if self.is_kw("AFTER") {
                        self.next();
                        let after = self.parse_value()?;
                        options.push(Opt {
                            name: format!("{} AFTER", name),
                            value: Some(OptValue::Expr(after)),
                        });
                    }
                    options.push(Opt { name, value });
                }
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        Ok(Admin::Restore(Box::new(Restore {
            kind,
            database,
            devices,
            options,
            moves,
        })))
    }

    fn parse_dbcc(&mut self) -> Result<Admin> {
        let name = self.parse_any_word()?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::LParen {
            self.next();
            if !self.eat(&Tok::RParen) {
                loop {
                    args.push(match &self.peek().tok {
                        Tok::Word(w) if !matches!(self.peek_at(1).tok, Tok::LParen | Tok::Dot) => {
                            let v = w.clone();
                            self.next();
                            Expr::Column(vec![Ident::new(v)])
                        }
                        _ => self.parse_expr()?,
                    });
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(&Tok::RParen)?;
            }
        }
        let mut with = Vec::new();
        if self.eat_kw("WITH") {
            loop {
                with.push(self.parse_any_word()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        Ok(Admin::Dbcc { name, args, with })
    }
}
