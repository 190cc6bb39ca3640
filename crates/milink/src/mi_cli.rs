//! `milink mi …`: the Azure CLI's `az sql mi` verbs and flags against a managed instance's management API
//! (show; link create/show/list/update/delete; partner-cert create/show/list/delete; endpoint-cert show/list).

use crate::mi_client::{versioned, ArmError, Client};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct MiArgs {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: MiCmd,
}

#[derive(Args)]
struct Global {
    /// Management API base URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "MILINK_MGMT_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// Bearer token: the static MILINK_API_TOKEN or one from `milink token create`.
    #[arg(long, env = "MILINK_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[arg(
        long,
        default_value = "00000000-0000-0000-0000-000000000000",
        global = true
    )]
    subscription: String,
    #[arg(short = 'o', long, value_enum, default_value = "json", global = true)]
    output: Output,
    /// PEM certificate(s) to verify the management endpoint against (e.g. the instance's tds-cert.pem).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Do not verify the server certificate; allowed only for a loopback endpoint.
    #[arg(long, global = true)]
    insecure_loopback: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Json,
    Table,
}

/// Which managed instance: both flags, or found in the subscription as `Get-AzSqlInstance` does.
#[derive(Args, Clone)]
struct Instance {
    #[arg(short = 'g', long)]
    resource_group: Option<String>,
    #[arg(long = "instance-name", visible_alias = "mi")]
    instance_name: Option<String>,
}

#[derive(Subcommand)]
enum MiCmd {
    /// Show the managed instance.
    Show {
        #[arg(short = 'g', long)]
        resource_group: Option<String>,
        #[arg(short = 'n', long, visible_aliases = ["mi", "instance-name"])]
        name: Option<String>,
    },
    /// Managed Instance links (distributed availability groups).
    Link {
        #[command(subcommand)]
        cmd: LinkCmd,
    },
    /// SQL Server certificates trusted by the managed instance (serverTrustCertificates).
    PartnerCert {
        #[command(subcommand)]
        cmd: PartnerCertCmd,
    },
    /// The managed instance's own endpoint certificates.
    EndpointCert {
        #[command(subcommand)]
        cmd: EndpointCertCmd,
    },
}

#[derive(Subcommand)]
enum LinkCmd {
    /// Create a link; `--wait` follows it until it is connected and healthy.
    Create(LinkCreate),
    Show {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
    },
    List {
        #[command(flatten)]
        mi: Instance,
    },
    Update {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
        #[arg(long)]
        replication_mode: String,
    },
    Delete {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
        /// Do not prompt for confirmation (milink never prompts; accepted for az compatibility).
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Fail the link over: Planned swaps roles with the partner without data loss (switching to synchronous
    /// commit first); ForcedAllowDataLoss makes the managed instance primary at once.
    Failover {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
        #[arg(long, value_parser = ["Planned", "ForcedAllowDataLoss"])]
        failover_type: String,
        /// Return once the request is accepted instead of waiting for the operation.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

#[derive(Args)]
struct LinkCreate {
    #[command(flatten)]
    mi: Instance,
    #[arg(short = 'n', long)]
    name: String,
    #[arg(long, visible_alias = "partner-ag")]
    partner_availability_group_name: String,
    #[arg(long, visible_alias = "instance-ag")]
    instance_availability_group_name: Option<String>,
    /// SQL Server's mirroring endpoint, e.g. TCP://sqlserver1.contoso.com:5022.
    #[arg(long)]
    partner_endpoint: String,
    #[arg(long, visible_alias = "database", num_args = 1.., required = true)]
    databases: Vec<String>,
    #[arg(long, default_value = "Async")]
    replication_mode: String,
    #[arg(long)]
    failover_mode: Option<String>,
    #[arg(long)]
    seeding_mode: Option<String>,
    /// Wait until the link is connected and synchronizing.
    #[arg(long)]
    wait: bool,
    /// Seconds `--wait` waits before giving up.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
}

#[derive(Subcommand)]
enum PartnerCertCmd {
    Create {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
        /// The certificate's public key as 0x… hex (CERTENCODED's output).
        #[arg(
            long,
            required_unless_present = "certificate_file",
            conflicts_with = "certificate_file"
        )]
        public_blob: Option<String>,
        /// A certificate file: PEM, DER, or a text file holding 0x… hex.
        #[arg(long)]
        certificate_file: Option<PathBuf>,
    },
    Show {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
    },
    List {
        #[command(flatten)]
        mi: Instance,
    },
    Delete {
        #[command(flatten)]
        mi: Instance,
        #[arg(short = 'n', long)]
        name: String,
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum EndpointCertCmd {
    Show {
        #[command(flatten)]
        mi: Instance,
        /// Endpoint type.
        #[arg(short = 'n', long, default_value = "DATABASE_MIRRORING")]
        name: String,
    },
    List {
        #[command(flatten)]
        mi: Instance,
    },
}

/// Run `milink mi …`; an ARM error is printed as az prints it and exits 1.
pub fn main(a: MiArgs) -> Result<()> {
    match run(a) {
        Err(e) if e.downcast_ref::<ArmError>().is_some() => {
            eprintln!("ERROR: {e}");
            std::process::exit(1)
        }
        r => r,
    }
}

fn run(a: MiArgs) -> Result<()> {
    let g = &a.global;
    let endpoint = g
        .endpoint
        .as_deref()
        .context("no management endpoint: pass --endpoint URL or set MILINK_MGMT_ENDPOINT")?;
    let token = g.token.as_deref().context(
        "no token: pass --token, set MILINK_API_TOKEN, or create one with `milink token create`",
    )?;
    let c = Client::new(endpoint, token, g.ca_file.as_deref(), g.insecure_loopback)?;
    let ctx = Ctx {
        c,
        sub: g.subscription.clone(),
        output: g.output,
    };
    match a.cmd {
        MiCmd::Show {
            resource_group,
            name,
        } => {
            let mi = ctx.instance(&Instance {
                resource_group,
                instance_name: name,
            })?;
            ctx.print(Kind::Instance, &ctx.c.get(&versioned(&mi))?)
        }
        MiCmd::Link { cmd } => ctx.link(cmd),
        MiCmd::PartnerCert { cmd } => ctx.partner_cert(cmd),
        MiCmd::EndpointCert { cmd } => ctx.endpoint_cert(cmd),
    }
}

struct Ctx {
    c: Client,
    sub: String,
    output: Output,
}

#[derive(Clone, Copy)]
enum Kind {
    Instance,
    Link,
    PartnerCert,
    EndpointCert,
}

impl Ctx {
    /// The instance's resource path.
    fn instance(&self, i: &Instance) -> Result<String> {
        if let (Some(rg), Some(mi)) = (&i.resource_group, &i.instance_name) {
            return Ok(format!(
                "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}",
                self.sub
            ));
        }
        let list = self.c.get(&versioned(&format!(
            "/subscriptions/{}/providers/Microsoft.Sql/managedInstances",
            self.sub
        )))?;
        let all = list["value"].as_array().cloned().unwrap_or_default();
        let found: Vec<&Value> = all
            .iter()
            .filter(|v| {
                i.instance_name.as_ref().is_none_or(|n| {
                    v["name"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(n))
                })
            })
            .collect();
        match found.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            [] => bail!("no managed instance found in subscription {}", self.sub),
            _ => bail!("several managed instances: pass --instance-name and --resource-group"),
        }
    }

    fn link(&self, cmd: LinkCmd) -> Result<()> {
        let dag = |mi: &Instance, name: &str| -> Result<String> {
            Ok(format!(
                "{}/distributedAvailabilityGroups/{name}",
                self.instance(mi)?
            ))
        };
        match cmd {
            LinkCmd::Create(a) => self.create_link(a),
            LinkCmd::Show { mi, name } => {
                self.print(Kind::Link, &self.c.get(&versioned(&dag(&mi, &name)?))?)
            }
            LinkCmd::List { mi } => {
                let p = format!("{}/distributedAvailabilityGroups", self.instance(&mi)?);
                self.print(Kind::Link, &self.c.get(&versioned(&p))?)
            }
            LinkCmd::Update {
                mi,
                name,
                replication_mode,
            } => {
                let body = json!({"properties": {"replicationMode": replication_mode}});
                let r = self
                    .c
                    .call("PATCH", &versioned(&dag(&mi, &name)?), Some(&body))?;
                self.print(Kind::Link, &r.body)
            }
            LinkCmd::Delete { mi, name, .. } => {
                self.c.call("DELETE", &versioned(&dag(&mi, &name)?), None)?;
                Ok(())
            }
            LinkCmd::Failover {
                mi,
                name,
                failover_type,
                no_wait,
                timeout,
            } => {
                let path = dag(&mi, &name)?;
                let body = json!({"failoverType": failover_type});
                let r =
                    self.c
                        .call("POST", &versioned(&format!("{path}/failover")), Some(&body))?;
                if !no_wait {
                    if let Some(op) = &r.location {
                        self.wait_operation(op, timeout, "failover")?;
                    }
                }
                self.print(Kind::Link, &self.c.get(&versioned(&path))?)
            }
        }
    }

    fn create_link(&self, a: LinkCreate) -> Result<()> {
        let path = format!(
            "{}/distributedAvailabilityGroups/{}",
            self.instance(&a.mi)?,
            a.name
        );
        let mut p = json!({
            "partnerAvailabilityGroupName": a.partner_availability_group_name,
            "partnerEndpoint": a.partner_endpoint,
            "replicationMode": a.replication_mode,
            "databases": a.databases.iter().map(|d| json!({"databaseName": d})).collect::<Vec<_>>(),
        });
        for (k, v) in [
            (
                "instanceAvailabilityGroupName",
                &a.instance_availability_group_name,
            ),
            ("failoverMode", &a.failover_mode),
            ("seedingMode", &a.seeding_mode),
        ] {
            if let Some(v) = v {
                p[k] = json!(v);
            }
        }
        let r = self
            .c
            .call("PUT", &versioned(&path), Some(&json!({ "properties": p })))?;
        if a.wait {
            if let Some(op) = &r.location {
                self.wait_operation(op, a.timeout, "link creation")?;
            }
            self.wait_healthy(&path, a.timeout)?;
        }
        let link = self.c.get(&versioned(&path))?;
        self.print(Kind::Link, &link)
    }

    fn wait_operation(&self, op: &str, timeout: u64, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let bar = spinner(what.to_string());
        loop {
            let v = self.c.get(op)?;
            match v["status"].as_str().unwrap_or("") {
                "Succeeded" => break,
                "InProgress" => {}
                s => {
                    bar.abandon();
                    bail!(
                        "{what} {s}: ({}) {}",
                        v["error"]["code"].as_str().unwrap_or(""),
                        v["error"]["message"].as_str().unwrap_or("")
                    )
                }
            }
            if Instant::now() > deadline {
                bar.abandon();
                bail!("{what} still in progress after {timeout}s");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bar.finish_with_message(format!("{what}: succeeded"));
        Ok(())
    }

    /// Poll the link through seeding until it is connected and healthy.
    fn wait_healthy(&self, path: &str, timeout: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let bar = indicatif::ProgressBar::new(100);
        if let Ok(st) =
            indicatif::ProgressStyle::with_template("[{elapsed}] {bar:30} {pos:>3}% {msg}")
        {
            bar.set_style(st);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        loop {
            let v = self.c.get(&versioned(path))?;
            let d = &v["properties"]["databases"][0];
            let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
            let progress = s("seedingProgress");
            bar.set_position(seeding_percent(&progress));
            bar.set_message(format!(
                "{}: {} · seeding {} · {} · hardened LSN {}",
                s("databaseName"),
                s("replicaState"),
                progress,
                s("connectedState"),
                s("lastHardenedLsn")
            ));
            if s("connectedState") == "CONNECTED"
                && s("synchronizationHealth") == "HEALTHY"
                && progress == "Completed"
            {
                bar.finish_with_message(format!(
                    "{}: {} and HEALTHY, hardened LSN {}",
                    s("databaseName"),
                    s("connectedState"),
                    s("lastHardenedLsn")
                ));
                return Ok(());
            }
            if Instant::now() > deadline {
                bar.abandon();
                bail!(
                    "the link is not healthy after {timeout}s: {}",
                    d["mostRecentLinkError"]
                        .as_str()
                        .unwrap_or("no error reported")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn partner_cert(&self, cmd: PartnerCertCmd) -> Result<()> {
        let cert = |mi: &Instance, name: &str| -> Result<String> {
            Ok(format!(
                "{}/serverTrustCertificates/{name}",
                self.instance(mi)?
            ))
        };
        match cmd {
            PartnerCertCmd::Create {
                mi,
                name,
                public_blob,
                certificate_file,
            } => {
                let blob = match (public_blob, certificate_file) {
                    (Some(b), _) => b,
                    (None, Some(f)) => blob_from_file(&f)?,
                    (None, None) => bail!("pass --public-blob or --certificate-file"),
                };
                let body = json!({"properties": {"publicBlob": blob}});
                let r = self
                    .c
                    .call("PUT", &versioned(&cert(&mi, &name)?), Some(&body))?;
                self.print(Kind::PartnerCert, &r.body)
            }
            PartnerCertCmd::Show { mi, name } => self.print(
                Kind::PartnerCert,
                &self.c.get(&versioned(&cert(&mi, &name)?))?,
            ),
            PartnerCertCmd::List { mi } => {
                let p = format!("{}/serverTrustCertificates", self.instance(&mi)?);
                self.print(Kind::PartnerCert, &self.c.get(&versioned(&p))?)
            }
            PartnerCertCmd::Delete { mi, name, .. } => {
                self.c
                    .call("DELETE", &versioned(&cert(&mi, &name)?), None)?;
                Ok(())
            }
        }
    }

    fn endpoint_cert(&self, cmd: EndpointCertCmd) -> Result<()> {
        let (mi, name) = match cmd {
            EndpointCertCmd::Show { mi, name } => (mi, Some(name)),
            EndpointCertCmd::List { mi } => (mi, None),
        };
        let mut p = format!("{}/endpointCertificates", self.instance(&mi)?);
        if let Some(n) = name {
            p = format!("{p}/{n}");
        }
        self.print(Kind::EndpointCert, &self.c.get(&versioned(&p))?)
    }

    fn print(&self, kind: Kind, v: &Value) -> Result<()> {
        match self.output {
            Output::Json => {
                // Like az: a list prints its items, not the envelope.
                let shown = v.get("value").unwrap_or(v);
                println!("{}", serde_json::to_string_pretty(shown)?);
            }
            Output::Table => print!("{}", table(kind, v)),
        }
        Ok(())
    }
}

/// The percentage in a seedingProgress text ("InProgress (45%, …)"); 100 once "Completed".
fn seeding_percent(progress: &str) -> u64 {
    if progress == "Completed" {
        return 100;
    }
    progress
        .split_once('(')
        .and_then(|(_, r)| r.split_once('%'))
        .and_then(|(p, _)| p.trim().parse().ok())
        .unwrap_or(0)
}

fn spinner(msg: impl Into<std::borrow::Cow<'static, str>>) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(s) = indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
        bar.set_style(s);
    }
    bar.set_message(msg.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The columns az shows for each resource kind.
fn columns(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Instance => &[
            ("Name", "/name"),
            ("Location", "/location"),
            (
                "FullyQualifiedDomainName",
                "/properties/fullyQualifiedDomainName",
            ),
            ("State", "/properties/state"),
            ("ProvisioningState", "/properties/provisioningState"),
        ],
        Kind::Link => &[
            ("Name", "/name"),
            ("Database", "/properties/databases/0/databaseName"),
            (
                "PartnerAvailabilityGroupName",
                "/properties/partnerAvailabilityGroupName",
            ),
            ("PartnerEndpoint", "/properties/partnerEndpoint"),
            ("ReplicationMode", "/properties/replicationMode"),
            ("ReplicaState", "/properties/databases/0/replicaState"),
            ("ConnectedState", "/properties/databases/0/connectedState"),
            ("LastHardenedLsn", "/properties/databases/0/lastHardenedLsn"),
        ],
        Kind::PartnerCert => &[
            ("Name", "/name"),
            ("CertificateName", "/properties/certificateName"),
            ("Thumbprint", "/properties/thumbprint"),
        ],
        Kind::EndpointCert => &[("Name", "/name"), ("PublicBlob", "/properties/publicBlob")],
    }
}

/// az's table: a header, a dashed rule, one row per resource.
fn table(kind: Kind, v: &Value) -> String {
    let items: Vec<&Value> = match v.get("value").and_then(|x| x.as_array()) {
        Some(a) => a.iter().collect(),
        None => vec![v],
    };
    let cols = columns(kind);
    let cell = |item: &Value, ptr: &str| -> String {
        let s = match item.pointer(ptr) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(x) => x.to_string(),
        };
        // Long blobs would drown the table.
        if s.chars().count() > 40 {
            format!("{}…", s.chars().take(39).collect::<String>())
        } else {
            s
        }
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| cols.iter().map(|(_, p)| cell(i, p)).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(n, (h, _))| {
            rows.iter()
                .map(|r| r[n].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| -> String {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", s.join("  ").trim_end())
    };
    let mut out = line(cols.iter().map(|(h, _)| h.to_string()).collect());
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

/// A certificate file as the 0x… blob the API takes: PEM, DER, or text already holding 0x… hex.
fn blob_from_file(p: &std::path::Path) -> Result<String> {
    use base64::Engine;
    let raw = std::fs::read(p).with_context(|| format!("--certificate-file {}", p.display()))?;
    let text = String::from_utf8_lossy(&raw);
    let t = text.trim();
    let der = if t.starts_with("0x") || t.starts_with("0X") {
        return Ok(t.to_string());
    } else if let Some(body) = t
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|r| r.split("-----END CERTIFICATE-----").next())
    {
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("{}: bad PEM", p.display()))?
    } else {
        raw
    };
    Ok(format!(
        "0x{}",
        der.iter().map(|b| format!("{b:02X}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_progress_percent_is_read_from_the_text() {
        assert_eq!(seeding_percent("InProgress (45%, 12.0 of 26.5 MB)"), 45);
        assert_eq!(seeding_percent("Completed"), 100);
        assert_eq!(seeding_percent("NotStarted"), 0);
        assert_eq!(seeding_percent("InProgress"), 0);
    }

    #[test]
    fn tables_have_a_header_a_rule_and_a_row_per_item() {
        let v = json!({"value": [
            {"name": "a", "properties": {"certificateName": "a", "thumbprint": "0xAB"}},
            {"name": "bbbbbb", "properties": {"certificateName": "bbbbbb"}}
        ]});
        let t = table(Kind::PartnerCert, &v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Name    CertificateName  Thumbprint");
        assert_eq!(lines[1], "------  ---------------  ----------");
        assert_eq!(lines[2], "a       a                0xAB");
        assert_eq!(lines[3], "bbbbbb  bbbbbb");
    }

    #[test]
    fn certificate_files_become_blobs() {
        let d = tempfile::tempdir().unwrap();
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x05];
        std::fs::write(d.path().join("c.der"), der).unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der)
        );
        std::fs::write(d.path().join("c.pem"), pem).unwrap();
        std::fs::write(d.path().join("c.txt"), "0x3003020105\n").unwrap();
        for f in ["c.der", "c.pem", "c.txt"] {
            assert_eq!(
                blob_from_file(&d.path().join(f)).unwrap(),
                "0x3003020105",
                "{f}"
            );
        }
    }
}
