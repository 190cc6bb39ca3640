//! `milink token create`: a signed, expiring Bearer token for the management API, made with the key kept in the
//! instance's data directory (created there, mode 0600, on first use).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Print a new token (one line, for `export MILINK_API_TOKEN=$(milink token create …)`).
    Create {
        /// The managed instance's data directory (where its token key lives).
        #[arg(long, env = "MILINK_DATA_DIR")]
        data_dir: PathBuf,
        /// Lifetime: 90s, 30m, 1h, 7d (plain numbers are seconds).
        #[arg(long, default_value = "1h")]
        expires_in: String,
        /// Who the token is for (recorded in its claims).
        #[arg(long, default_value = "milink-cli")]
        subject: String,
    },
}

pub fn parse_duration(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("--expires-in {s}: expected e.g. 90s, 30m, 1h, 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--expires-in {s}: unit must be s, m, h or d"),
    };
    if secs <= 0 {
        bail!("--expires-in {s}: must be positive");
    }
    Ok(secs)
}

pub fn main(cmd: TokenCmd) -> Result<()> {
    let TokenCmd::Create {
        data_dir,
        expires_in,
        subject,
    } = cmd;
    let ttl = parse_duration(&expires_in)?;
    // Only an instance's data directory: a typo must not scatter keys around.
    if !data_dir.join("milink.json").exists() {
        bail!(
            "{} is not an instance's data directory (no milink.json)",
            data_dir.display()
        );
    }
    let key = mgmt::auth::SigningKey::load_or_create(&data_dir)
        .with_context(|| format!("token key in {}", data_dir.display()))?;
    let now = chrono::Utc::now().timestamp();
    println!("{}", key.create_token(&subject, now, ttl));
    let exp = chrono::DateTime::from_timestamp(now + ttl, 0).unwrap_or_default();
    eprintln!("expires {}", exp.to_rfc3339());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        use super::parse_duration as p;
        assert_eq!(p("90").unwrap(), 90);
        assert_eq!(p("30m").unwrap(), 1800);
        assert_eq!(p("1h").unwrap(), 3600);
        assert_eq!(p("7d").unwrap(), 604_800);
        assert!(p("1w").is_err() && p("h").is_err() && p("0s").is_err());
    }
}
