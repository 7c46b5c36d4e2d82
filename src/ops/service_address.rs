//! `hotbackup service-address up|down`: the instance's service (virtual) address, held by the
//! master unit (`ExecStartPost=` / `ExecStopPost=` of `hotbackup-master@.service`, run as root
//! with the `+` prefix while the daemon itself stays unprivileged).
//!
//! `up` checks first that no other host answers for the address (ARP duplicate address
//! detection with `arping -D`, IPv4, when iputils' arping is installed): a host that comes back
//! after a failover still believes it is master until it meets its peer, and must not steal
//! the address from the new master. Then it adds the address with `ip address add` and
//! announces it with gratuitous ARP (`arping -U`), so neighbours' caches follow at once.
//! `down` removes it. Both are idempotent. Messages go to stderr with a `<N>` syslog prefix,
//! which journald turns into the record's priority.
//!
//! This module runs `ip` and `arping`; it never touches the data directory or the daemon.

use std::path::PathBuf;
use std::process::Command;

use thiserror::Error;

use crate::config::{Config, ServiceAddress};

/// Why `service-address` failed.
#[derive(Debug, Error)]
pub enum ServiceAddressError {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
}

/// What `up` or `down` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The config names no service address.
    NoAddress,
    Added {
        announced: bool,
    },
    AlreadyThere {
        announced: bool,
    },
    /// Another host answers for the address: it was not added.
    HeldElsewhere {
        by: String,
    },
    Removed,
    NotThere,
}

impl Outcome {
    /// The line to print, with its syslog priority prefix.
    pub fn describe(&self, cfg: &Config) -> String {
        let inst = &cfg.instance;
        let addr = cfg
            .service
            .address
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let arp = |a: bool| {
            if a {
                ", announced with gratuitous ARP"
            } else {
                " (no gratuitous ARP: install iputils-arping)"
            }
        };
        match self {
            Outcome::NoAddress => format!(
                "<6>{inst}: no [service] address in {}; nothing to do",
                cfg.path.display()
            ),
            Outcome::Added { announced } => {
                format!("<5>{inst}: service address {addr} added{}", arp(*announced))
            }
            Outcome::AlreadyThere { announced } => format!(
                "<5>{inst}: service address {addr} was already here{}",
                arp(*announced)
            ),
            Outcome::HeldElsewhere { by } => format!(
                "<3>{inst}: service address {addr} NOT taken: another host answers for it ({by}); \
                 this node is probably not the master any more (hotbackup-rejoin {inst})"
            ),
            Outcome::Removed => format!("<5>{inst}: service address {addr} removed"),
            Outcome::NotThere => format!("<6>{inst}: service address {addr} was not here"),
        }
    }
}

/// Finds a program in PATH (and the sbin directories, which a plain user's PATH may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Output {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(program: &str, args: &[&str]) -> Result<Output, ServiceAddressError> {
    let cmd = format!("{program} {}", args.join(" "));
    let exe = find_program(program).unwrap_or_else(|| PathBuf::from(program));
    let out =
        Command::new(exe)
            .args(args)
            .output()
            .map_err(|source| ServiceAddressError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
    Ok(Output {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn run_ok(program: &str, args: &[&str]) -> Result<Output, ServiceAddressError> {
    let o = run(program, args)?;
    if o.success {
        Ok(o)
    } else {
        Err(ServiceAddressError::Failed {
            cmd: format!("{program} {}", args.join(" ")),
            status: o.code.map_or("killed".into(), |c| format!("exit {c}")),
            stderr: o.stderr,
        })
    }
}

/// Whether `ip` lists the address on its device.
fn is_present(a: &ServiceAddress) -> Result<bool, ServiceAddressError> {
    let o = run_ok("ip", &["-o", "address", "show", "dev", &a.dev])?;
    let want = format!("{}/{}", a.ip, a.prefix);
    Ok(o.stdout
        .lines()
        .any(|l| l.split_whitespace().any(|w| w == want)))
}

/// Duplicate address detection: `Some(reply line)` when another host answers for the address.
fn held_elsewhere(a: &ServiceAddress) -> Result<Option<String>, ServiceAddressError> {
    if !a.ip.is_ipv4() || find_program("arping").is_none() {
        return Ok(None);
    }
    let ip = a.ip.to_string();
    // iputils arping -D: exit 0 when nobody answered, 1 when someone did.
    let o = run("arping", &["-D", "-c", "2", "-w", "3", "-I", &a.dev, &ip])?;
    match o.code {
        Some(0) => Ok(None),
        Some(1) => Ok(Some(
            o.stdout
                .lines()
                .find(|l| l.contains("reply from"))
                .unwrap_or("a reply to duplicate address detection")
                .trim()
                .to_string(),
        )),
        _ => Err(ServiceAddressError::Failed {
            cmd: format!("arping -D -c 2 -w 3 -I {} {ip}", a.dev),
            status: o.code.map_or("killed".into(), |c| format!("exit {c}")),
            stderr: o.stderr,
        }),
    }
}

/// Gratuitous ARP for an IPv4 address; false when arping is missing.
fn announce(a: &ServiceAddress) -> Result<bool, ServiceAddressError> {
    if !a.ip.is_ipv4() || find_program("arping").is_none() {
        return Ok(false);
    }
    let ip = a.ip.to_string();
    run_ok("arping", &["-U", "-c", "2", "-I", &a.dev, &ip])?;
    Ok(true)
}

/// Adds the service address (after duplicate detection) and announces it.
pub fn up(cfg: &Config) -> Result<Outcome, ServiceAddressError> {
    let Some(a) = &cfg.service.address else {
        return Ok(Outcome::NoAddress);
    };
    if is_present(a)? {
        return Ok(Outcome::AlreadyThere {
            announced: announce(a)?,
        });
    }
    if let Some(by) = held_elsewhere(a)? {
        return Ok(Outcome::HeldElsewhere { by });
    }
    let cidr = format!("{}/{}", a.ip, a.prefix);
    run_ok("ip", &["address", "add", &cidr, "dev", &a.dev])?;
    Ok(Outcome::Added {
        announced: announce(a)?,
    })
}

/// Removes the service address.
pub fn down(cfg: &Config) -> Result<Outcome, ServiceAddressError> {
    let Some(a) = &cfg.service.address else {
        return Ok(Outcome::NoAddress);
    };
    if !is_present(a)? {
        return Ok(Outcome::NotThere);
    }
    let cidr = format!("{}/{}", a.ip, a.prefix);
    run_ok("ip", &["address", "del", &cidr, "dev", &a.dev])?;
    Ok(Outcome::Removed)
}
