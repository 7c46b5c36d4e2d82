//! `hotbackup local-pair`: a master and its slave on loopback, for trying hotbackup out.
//!
//! Writes two configs and a shared key into a directory (default: a fresh temporary one),
//! starts `hotbackup serve` twice as child processes, says how to use them, and on Ctrl-C (or
//! SIGTERM) stops both gracefully and waits for them.

use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Ports of the pair.
pub struct PairPorts {
    pub master_client: u16,
    pub slave_client: u16,
    pub master_link: u16,
    pub slave_link: u16,
}

impl Default for PairPorts {
    fn default() -> Self {
        PairPorts {
            master_client: 7379,
            slave_client: 7380,
            master_link: 2001,
            slave_link: 2002,
        }
    }
}

fn config(dir: &Path, role: &str, client: u16, link: u16, peer_link: u16) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# Written by `hotbackup local-pair`.");
    let _ = writeln!(t, "role = \"{role}\"");
    let _ = writeln!(t, "data_dir = \"{}\"", dir.join(role).display());
    let _ = writeln!(t, "\n[client]\nlisten = \"127.0.0.1:{client}\"");
    let _ = writeln!(
        t,
        "unix_socket = \"{}\"",
        dir.join(format!("{role}.sock")).display()
    );
    let _ = writeln!(
        t,
        "\n[link]\nlisten = \"127.0.0.1:{link}\"\npeers = [\"127.0.0.1:{peer_link}\"]\nkey_file = \"{}\"",
        dir.join("pair.key").display()
    );
    let _ = writeln!(t, "\n[log]\nlevel = \"info\"");
    t
}

/// Writes the configs and key (keeping an existing key), returns the two config paths.
pub fn prepare(dir: &Path, ports: &PairPorts) -> io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let key = dir.join("pair.key");
    if !key.exists() {
        let bytes: [u8; 32] = crate::link::auth::random_bytes()?;
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&key, text + "\n")?;
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let m = dir.join("master.toml");
    let s = dir.join("slave.toml");
    std::fs::write(
        &m,
        config(
            dir,
            "master",
            ports.master_client,
            ports.master_link,
            ports.slave_link,
        ),
    )?;
    std::fs::write(
        &s,
        config(
            dir,
            "slave",
            ports.slave_client,
            ports.slave_link,
            ports.master_link,
        ),
    )?;
    Ok((m, s))
}

fn spawn(exe: &Path, config: &Path) -> io::Result<Child> {
    Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .spawn()
}

fn stop(child: &mut Child, name: &str) {
    // SAFETY: kill(2) on a process this function's caller started; no memory involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            eprintln!("local-pair: {name} stopped ({st})");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("local-pair: {name} did not stop within 30 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs the pair until Ctrl-C. Returns the exit code.
pub fn run(dir: Option<&Path>, ports: &PairPorts) -> io::Result<i32> {
    let tmp;
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            tmp = std::env::temp_dir().join(format!("hotbackup-pair-{}", std::process::id()));
            tmp
        }
    };
    let (mcfg, scfg) = prepare(&dir, ports)?;
    let exe = std::env::current_exe()?;
    let stop_flag = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop_flag.clone())?;
    }
    let mut slave = spawn(&exe, &scfg)?;
    let mut master = match spawn(&exe, &mcfg) {
        Ok(m) => m,
        Err(e) => {
            stop(&mut slave, "slave");
            return Err(e);
        }
    };
    eprintln!(
        "\nlocal-pair: master on 127.0.0.1:{mc}, slave on 127.0.0.1:{sc} (data and configs in {d})\n\
         \n  redis-cli -p {mc} SET greeting hello        # write to the master\n  \
         redis-cli -p {sc} GET greeting              # read it on the slave\n  \
         redis-cli -p {sc} INFO replication\n  \
         hotbackup status --config {m}\n\
         \nCtrl-C stops both.\n",
        mc = ports.master_client,
        sc = ports.slave_client,
        d = dir.display(),
        m = mcfg.display(),
    );
    let mut code = 0;
    while !stop_flag.load(Ordering::Relaxed) {
        for (child, name) in [(&mut master, "master"), (&mut slave, "slave")] {
            if let Ok(Some(st)) = child.try_wait() {
                eprintln!("local-pair: the {name} exited ({st}); stopping the pair");
                code = 1;
                stop_flag.store(true, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(&mut master, "master");
    stop(&mut slave, "slave");
    Ok(code)
}
