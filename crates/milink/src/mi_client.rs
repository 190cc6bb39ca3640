//! The management API over HTTPS for `milink mi`: a blocking client that verifies the server against the system's
//! web roots, a `--ca-file`, or (loopback only) nothing, sends the Bearer token, and turns ARM error envelopes into
//! az-style errors.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const API_VERSION: &str = "2023-08-01";

/// An ARM error answer: printed the way az prints it.
#[derive(Debug)]
pub struct ArmError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ArmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}) {}\nCode: {}\nMessage: {}",
            self.code, self.message, self.code, self.message
        )
    }
}

impl std::error::Error for ArmError {}

pub struct Response {
    pub location: Option<String>,
    pub body: Value,
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map(|x| x.1).unwrap_or(endpoint);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = authority.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map(|x| x.0).unwrap_or(authority)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    pub fn new(
        endpoint: &str,
        token: &str,
        ca_file: Option<&Path>,
        insecure_loopback: bool,
    ) -> Result<Client> {
        use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(p) = ca_file {
            let pem = std::fs::read(p).with_context(|| format!("--ca-file {}", p.display()))?;
            let certs: Vec<_> = parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                bail!("--ca-file {}: no PEM certificate in it", p.display());
            }
            tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
        }
        if insecure_loopback {
            // Skipping verification is only harmless when the bytes never leave the machine.
            if !is_loopback(endpoint) {
                bail!("--insecure-loopback only works with a loopback endpoint ({endpoint} is not one): use --ca-file");
            }
            tls = tls.disable_verification(true);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Client {
            agent,
            base: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// `method path` with an optional JSON body; a non-2xx answer becomes an `ArmError`.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let auth = format!("Bearer {}", self.token);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            (m, b) => {
                let b = b.map(|v| v.to_string()).unwrap_or_default();
                let req = match m {
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                req.header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(b)
            }
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("azure-asyncoperation")
            .or_else(|| r.headers().get("location"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.into_body().read_to_string().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let e = &body["error"];
            return Err(ArmError {
                code: e["code"].as_str().unwrap_or("HttpError").to_string(),
                message: e["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}: {text}")),
            }
            .into());
        }
        Ok(Response { location, body })
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        Ok(self.call("GET", path, None)?.body)
    }
}

/// `path?api-version=…`
pub fn versioned(path: &str) -> String {
    format!("{path}?api-version={API_VERSION}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_endpoints_are_recognised() {
        for e in [
            "https://127.0.0.1:8443",
            "https://localhost:1/",
            "https://[::1]:8443",
            "http://127.5.0.1",
        ] {
            assert!(super::is_loopback(e), "{e}");
        }
        for e in [
            "https://10.0.0.1:8443",
            "https://example.com",
            "https://[fe80::1]:1",
        ] {
            assert!(!super::is_loopback(e), "{e}");
        }
    }
}
