//! `hotbackup setup master|slave NAME`: makes a host ready to run instance NAME under systemd.
//!
//! It writes `/etc/hotbackup/NAME.toml` from a template (`etc/hotbackup/setup-template.toml`),
//! the pair's key file `/etc/hotbackup/NAME.key` (mode 0600, owned by the service user; new
//! random bytes, or imported with `--key-file`), and the drop-in that gives
//! `hotbackup-slave@NAME.socket` the instance's link port. Before it writes a config that would
//! make the node listen on a port, it checks that the port is free and names the process that
//! holds it otherwise ([`super::port_check`]).
//!
//! It is idempotent: run again with the same arguments it finds every file as it would write
//! it and changes nothing. A file that exists with other contents is never replaced without
//! `--force`. Every file is written to `FILE.tmp` and renamed into place.
//!
//! `--root DIR` (or `HOTBACKUP_ROOT`) puts every file under DIR instead of `/`, the way
//! `systemctl --root` does, for image builds and tests; the paths written *into* the files stay
//! the real ones (`/etc/hotbackup/...`, `/var/lib/hotbackup/...`). This module writes files
//! only: it never starts, stops or reloads a unit (it prints the commands to run).

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::port_check;

/// The built-in config template; `@NAME@` placeholders are filled by [`render_config`]. The
/// packages also install it as `/etc/hotbackup/setup-template.toml` (a conffile the admin may
/// edit), which setup uses instead when it exists.
const TEMPLATE: &str = include_str!("../../etc/hotbackup/setup-template.toml");

/// Bytes of randomness in a new key (written base64, 44 characters).
const KEY_BYTES: usize = 32;
/// Same bounds as the daemon's key loader: at least 16 bytes, a small file.
const MIN_KEY_LEN: usize = 16;
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The role a new instance starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupRole {
    Master,
    Slave,
}

impl SetupRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SetupRole::Master => "master",
            SetupRole::Slave => "slave",
        }
    }
}

/// What `hotbackup setup` was asked to do.
#[derive(Debug, Clone)]
pub struct SetupOpts {
    pub role: SetupRole,
    /// The instance name (`NAME` in `/etc/hotbackup/NAME.toml` and the unit names).
    pub name: String,
    /// This node's hot-backup (link) port.
    pub port: u16,
    /// The address the link port is bound to (all interfaces by default).
    pub listen_address: IpAddr,
    /// The partner node(s), `HOST:PORT`.
    pub peers: Vec<String>,
    /// Where clients connect.
    pub client_listen: SocketAddr,
    /// A key file to import instead of making a new key.
    pub key_file: Option<PathBuf>,
    /// The service user that must own the key file.
    pub user: String,
    /// Where `/` is (`/` on a real system).
    pub root: PathBuf,
    /// Replace files that exist with other contents.
    pub force: bool,
    /// Do not check that the ports are free.
    pub skip_port_check: bool,
    /// The service address the master unit holds (`[service] address`).
    pub address: Option<crate::config::ServiceAddress>,
}

/// Why setup did not complete. [`SetupError::exit_code`] gives the command's exit code.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(
        "invalid instance name {0:?}: use 1 to 64 letters, digits, '_', '-' or '.', not starting with '.' or '-'"
    )]
    BadName(String),
    #[error(
        "invalid peer {0:?}: expected HOST:PORT (e.g. b.example:2000, 10.0.0.2:2000, [fd00::2]:2000)"
    )]
    BadPeer(String),
    #[error("give the partner node with --peer HOST:PORT (at least one)")]
    NoPeer,
    #[error("port 0 is not a port: give --port 1..65535")]
    PortZero,
    #[error(
        "the service user {0:?} does not exist (the hotbackup package creates it; --user names another)"
    )]
    NoUser(String),
    #[error(
        "{what} {port} is not free:\n{report}(use another port, stop that process, or --skip-port-check if it is this instance's own service)"
    )]
    PortTaken {
        what: &'static str,
        port: u16,
        report: String,
    },
    #[error("cannot check port {port}: {source}")]
    PortCheck {
        port: u16,
        source: port_check::PortCheckError,
    },
    #[error(
        "{} exists with other contents; not replaced (compare it, then run again with --force to replace it)",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("cannot use the key file {}: {why}", path.display())]
    BadKey { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SetupError {
    /// 2: bad usage; 3: refused (a file exists, a port is taken); 1: failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::BadName(_)
            | SetupError::BadPeer(_)
            | SetupError::NoPeer
            | SetupError::PortZero
            | SetupError::NoUser(_)
            | SetupError::BadKey { .. } => 2,
            SetupError::PortTaken { .. } | SetupError::Exists(_) => 3,
            SetupError::PortCheck { .. } | SetupError::Io { .. } => 1,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    Created,
    Unchanged,
    Replaced,
}

impl FileAction {
    fn as_str(self) -> &'static str {
        match self {
            FileAction::Created => "created",
            FileAction::Unchanged => "unchanged",
            FileAction::Replaced => "replaced",
        }
    }
}

/// What setup did, and what the admin runs next.
#[derive(Debug)]
pub struct SetupReport {
    /// (real path, action), in the order written.
    pub files: Vec<(PathBuf, FileAction)>,
    pub next: Vec<String>,
}

impl SetupReport {
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for (path, action) in &self.files {
            let _ = writeln!(out, "{:<9} {}", action.as_str(), path.display());
        }
        out.push_str("\nnext:\n");
        for line in &self.next {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// The real paths of an instance's files (as on the target system, not under `--root`).
pub struct InstancePaths {
    pub config: PathBuf,
    pub key: PathBuf,
    pub data_dir: PathBuf,
    pub socket_dropin: PathBuf,
}

impl InstancePaths {
    pub fn new(name: &str) -> InstancePaths {
        InstancePaths {
            config: PathBuf::from(format!("/etc/hotbackup/{name}.toml")),
            key: PathBuf::from(format!("/etc/hotbackup/{name}.key")),
            data_dir: PathBuf::from(format!("/var/lib/hotbackup/{name}")),
            socket_dropin: PathBuf::from(format!(
                "/etc/systemd/system/hotbackup-slave@{name}.socket.d/link.conf"
            )),
        }
    }
}

/// `real` (absolute) under `root`.
fn under(root: &Path, real: &Path) -> PathBuf {
    root.join(real.strip_prefix("/").unwrap_or(real))
}

/// An instance name is used in file names and unit names: keep it to a safe alphabet.
pub fn check_name(name: &str) -> Result<(), SetupError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SetupError::BadName(name.to_owned()))
    }
}

/// `HOST:PORT`, with `[v6]:PORT` for IPv6 literals; the host is not resolved here.
pub fn check_peer(peer: &str) -> Result<(), SetupError> {
    let bad = || SetupError::BadPeer(peer.to_owned());
    let (host, port) = peer.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.is_empty() {
        return Err(bad());
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if host_ok { Ok(()) } else { Err(bad()) }
}

/// Escapes a string for a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn link_listen(opts: &SetupOpts) -> SocketAddr {
    SocketAddr::new(opts.listen_address, opts.port)
}

/// The template to use: `/etc/hotbackup/setup-template.toml` under the root, or the built-in.
fn template(root: &Path) -> Result<String, SetupError> {
    let real = Path::new("/etc/hotbackup/setup-template.toml");
    match std::fs::read_to_string(under(root, real)) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TEMPLATE.to_string()),
        Err(e) => Err(io_err(real)(e)),
    }
}

/// The instance's config file, from the built-in template.
pub fn render_config(opts: &SetupOpts) -> String {
    render_config_from(TEMPLATE, opts)
}

/// The instance's config file from `template`.
pub fn render_config_from(template: &str, opts: &SetupOpts) -> String {
    let paths = InstancePaths::new(&opts.name);
    let peers = opts
        .peers
        .iter()
        .map(|p| format!("\"{}\"", toml_str(p)))
        .collect::<Vec<_>>()
        .join(", ");
    template
        .replace("@INSTANCE@", &toml_str(&opts.name))
        .replace("@ROLE@", opts.role.as_str())
        .replace("@DATA_DIR@", &toml_str(&paths.data_dir.to_string_lossy()))
        .replace("@CLIENT_LISTEN@", &opts.client_listen.to_string())
        .replace("@LINK_LISTEN@", &link_listen(opts).to_string())
        .replace("@PEERS@", &peers)
        .replace("@KEY_FILE@", &toml_str(&paths.key.to_string_lossy()))
        .replace(
            "@SERVICE_ADDRESS@",
            &match &opts.address {
                Some(a) => format!("address = \"{}\"", toml_str(&a.to_string())),
                None => "# address = \"10.0.0.100/24 dev eth0\"".to_string(),
            },
        )
}

/// The drop-in for `hotbackup-slave@NAME.socket`: resets the template's port and sets this
/// instance's. All interfaces as `PORT` alone (IPv4 and IPv6, `BindIPv6Only=both`).
pub fn render_socket_dropin(opts: &SetupOpts) -> String {
    let listen = if opts.listen_address.is_unspecified() {
        opts.port.to_string()
    } else {
        link_listen(opts).to_string()
    };
    format!(
        "# Written by `hotbackup setup` for instance {name}: its hot-backup link port, the same\n\
         # as [link] listen in /etc/hotbackup/{name}.toml.\n\
         [Socket]\n\
         ListenStream=\n\
         ListenStream={listen}\n",
        name = opts.name
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A new key: 32 bytes from the kernel's random source, base64, newline.
fn new_key() -> Result<Vec<u8>, SetupError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; KEY_BYTES];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err(path))?;
    let mut key = base64(&bytes).into_bytes();
    key.push(b'\n');
    Ok(key)
}

/// Reads a key to import, with the daemon's rules (at least 16 bytes without trailing
/// whitespace; a regular, small file).
fn read_key(path: &Path) -> Result<Vec<u8>, SetupError> {
    let bad = |why: String| SetupError::BadKey {
        path: path.to_path_buf(),
        why,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(bad("larger than 64KiB: not a key file?".into()));
    }
    let len = bytes.trim_ascii_end().len();
    if len < MIN_KEY_LEN {
        return Err(bad(format!(
            "the key is {len} bytes long; a key needs at least {MIN_KEY_LEN}"
        )));
    }
    Ok(bytes)
}

/// Who owns a file setup writes.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

fn lookup_user(name: &str) -> Result<Owner, SetupError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(Owner {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        _ => Err(SetupError::NoUser(name.to_owned())),
    }
}

/// One file to put in place.
struct Wanted<'a> {
    real: &'a Path,
    contents: &'a [u8],
    mode: u32,
    /// (uid, gid) to chown to; None: whoever runs setup.
    owner: Option<(u32, u32)>,
}

/// What is at `path` now compared with `contents`.
fn compare(path: &Path, contents: &[u8]) -> Result<Option<bool>, SetupError> {
    match std::fs::read(path) {
        Ok(have) => Ok(Some(have == contents)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes `w` under `root` (tmp + fsync + rename), creating parent directories (0755).
fn put(root: &Path, w: &Wanted<'_>, replace: bool) -> Result<FileAction, SetupError> {
    let path = under(root, w.real);
    let action = match compare(&path, w.contents)? {
        Some(true) => {
            // Same contents: make sure mode and owner are right too (a copied key may not be).
            fix_mode_owner(&path, w)?;
            return Ok(FileAction::Unchanged);
        }
        Some(false) if !replace => return Err(SetupError::Exists(w.real.to_path_buf())),
        Some(false) => FileAction::Replaced,
        None => FileAction::Created,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(w.mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(w.contents)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
    }
    fix_mode_owner(&tmp, w)?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(action)
}

fn fix_mode_owner(path: &Path, w: &Wanted<'_>) -> Result<(), SetupError> {
    if let Some((uid, gid)) = w.owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(w.mode)).map_err(io_err(path))
}

fn check_port_free(what: &'static str, port: u16) -> Result<(), SetupError> {
    let report =
        port_check::check_port(port).map_err(|source| SetupError::PortCheck { port, source })?;
    if report.free {
        Ok(())
    } else {
        Err(SetupError::PortTaken {
            what,
            port,
            report: report.render_human(),
        })
    }
}

/// The root to use: `--root`, else `HOTBACKUP_ROOT`, else `/`.
pub fn default_root(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| {
        std::env::var_os("HOTBACKUP_ROOT")
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("/"))
}

/// Runs `hotbackup setup`.
pub fn setup(opts: &SetupOpts) -> Result<SetupReport, SetupError> {
    check_name(&opts.name)?;
    if opts.port == 0 {
        return Err(SetupError::PortZero);
    }
    if opts.peers.is_empty() {
        return Err(SetupError::NoPeer);
    }
    for p in &opts.peers {
        check_peer(p)?;
    }
    let owner = lookup_user(&opts.user)?;
    let root_owned = nix::unistd::geteuid().is_root();
    let paths = InstancePaths::new(&opts.name);

    let config = render_config_from(&template(&opts.root)?, opts);
    let dropin = render_socket_dropin(opts);
    let key = match &opts.key_file {
        Some(src) => read_key(src)?,
        None => match std::fs::read(under(&opts.root, &paths.key)) {
            // A key already there is kept: it is the pair's, and may have been copied in.
            Ok(existing) => existing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_key()?,
            Err(e) => return Err(io_err(&paths.key)(e)),
        },
    };

    // Decide before writing anything, so a refusal leaves every file as it was.
    let config_state = compare(&under(&opts.root, &paths.config), config.as_bytes())?;
    let checks = [
        (&paths.config, config.as_bytes()),
        (&paths.key, key.as_slice()),
        (&paths.socket_dropin, dropin.as_bytes()),
    ];
    if !opts.force {
        for (real, contents) in checks {
            if compare(&under(&opts.root, real), contents)? == Some(false) {
                return Err(SetupError::Exists(real.clone()));
            }
        }
    }
    if config_state != Some(true) && !opts.skip_port_check {
        check_port_free("the link port", opts.port)?;
        if opts.client_listen.port() != 0 && opts.client_listen.port() != opts.port {
            check_port_free("the client port", opts.client_listen.port())?;
        }
    }

    // Config: root:service-group 0640 (the daemon reads it, only root writes it). Key: the
    // service user's, 0600 (the daemon refuses a key others can read).
    let (config_owner, key_owner) = if root_owned {
        (Some((0, owner.gid)), Some((owner.uid, owner.gid)))
    } else {
        (None, None)
    };
    let mut files = Vec::new();
    for w in [
        Wanted {
            real: &paths.key,
            contents: &key,
            mode: 0o600,
            owner: key_owner,
        },
        Wanted {
            real: &paths.config,
            contents: config.as_bytes(),
            mode: 0o640,
            owner: config_owner,
        },
        Wanted {
            real: &paths.socket_dropin,
            contents: dropin.as_bytes(),
            mode: 0o644,
            owner: None,
        },
    ] {
        let action = put(&opts.root, &w, opts.force)?;
        files.push((w.real.to_path_buf(), action));
    }
    Ok(SetupReport {
        files,
        next: next_commands(opts, &paths),
    })
}

fn next_commands(opts: &SetupOpts, paths: &InstancePaths) -> Vec<String> {
    let name = &opts.name;
    let mut next = vec!["systemctl daemon-reload".to_owned()];
    match opts.role {
        SetupRole::Slave => {
            next.push(format!(
                "systemctl enable --now hotbackup-slave@{name}.socket hotbackup-slave@{name}.service"
            ));
            next.push(format!(
                "# the master needs this node's key: copy {} to it and run there",
                paths.key.display()
            ));
            next.push(format!(
                "#   hotbackup setup master {name} --port PORT --peer THIS-HOST:{} --key-file COPIED-KEY",
                opts.port
            ));
        }
        SetupRole::Master => {
            next.push(format!(
                "# both nodes need the same key: if the slave was set up first, import its key here with --key-file (and --force); else copy {} to the slave and use it there with --key-file",
                paths.key.display()
            ));
            next.push(format!(
                "systemctl enable --now hotbackup-master@{name}.service"
            ));
        }
    }
    next.push(format!(
        "hotbackup status --config {}",
        paths.config.display()
    ));
    next.push(format!(
        "journalctl -u 'hotbackup-*@{name}*' -p warning    # incidents"
    ));
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(root: &Path) -> SetupOpts {
        SetupOpts {
            role: SetupRole::Slave,
            name: "db1".into(),
            port: 2000,
            listen_address: "0.0.0.0".parse().unwrap(),
            peers: vec!["10.77.0.1:2000".into()],
            client_listen: "127.0.0.1:7379".parse().unwrap(),
            key_file: None,
            user: nix::unistd::User::from_uid(nix::unistd::geteuid())
                .unwrap()
                .unwrap()
                .name,
            root: root.to_path_buf(),
            force: false,
            skip_port_check: true,
            address: None,
        }
    }

    #[test]
    fn names_are_checked() {
        for good in ["db1", "a", "orders_2", "acct.main", "x-y"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "ä",
            "a@b",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(check_name(bad), Err(SetupError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn peers_are_checked() {
        for good in ["b.example:2000", "10.0.0.2:2000", "[fd00::2]:2000", "b:1"] {
            assert!(check_peer(good).is_ok(), "{good}");
        }
        for bad in [
            "b",
            "b:0",
            "b:x",
            ":2000",
            "[fd00::2:2000",
            "b c:1",
            "b:70000",
            "[x]:1",
        ] {
            assert!(check_peer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        let k = new_key().unwrap();
        assert_eq!(k.len(), 45);
    }

    #[test]
    fn rendered_config_parses_and_says_what_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.peers = vec!["10.77.0.1:2000".into(), "[fd00::1]:2001".into()];
        let text = render_config(&o);
        for placeholder in [
            "@INSTANCE@",
            "@ROLE@",
            "@DATA_DIR@",
            "@PEERS@",
            "@KEY_FILE@",
            "@SERVICE_ADDRESS@",
        ] {
            assert!(
                !text.contains(placeholder),
                "{placeholder} left in:\n{text}"
            );
        }
        // Parse it with the key in a temporary place (the real path is /etc/hotbackup/db1.key).
        let key = dir.path().join("db1.key");
        std::fs::write(&key, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = text.replace("/etc/hotbackup/db1.key", &key.to_string_lossy());
        let cfg = crate::config::Config::parse(&text, &dir.path().join("db1.toml")).unwrap();
        assert_eq!(cfg.instance, "db1");
        assert_eq!(cfg.role, crate::config::Role::Slave);
        assert_eq!(cfg.data_dir, Path::new("/var/lib/hotbackup/db1"));
        assert_eq!(cfg.link.listen, Some("0.0.0.0:2000".parse().unwrap()));
        assert_eq!(cfg.link.peers, vec!["10.77.0.1:2000", "[fd00::1]:2001"]);
        assert_eq!(cfg.client.listen, Some("127.0.0.1:7379".parse().unwrap()));
        assert_eq!(cfg.service.address, None);
        // With a service address, the [service] section names it.
        o.address = Some(crate::config::ServiceAddress::parse("10.77.0.100/24 dev vA").unwrap());
        let text = render_config(&o).replace("/etc/hotbackup/db1.key", &key.to_string_lossy());
        let cfg = crate::config::Config::parse(&text, &dir.path().join("db1.toml")).unwrap();
        assert_eq!(cfg.service.address, o.address);
    }

    #[test]
    fn socket_dropin_resets_the_template_port() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        assert!(render_socket_dropin(&o).ends_with("[Socket]\nListenStream=\nListenStream=2000\n"));
        o.listen_address = "10.77.0.2".parse().unwrap();
        assert!(render_socket_dropin(&o).ends_with("ListenStream=10.77.0.2:2000\n"));
    }

    #[test]
    fn setup_writes_files_then_is_idempotent_and_never_overwrites_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        let r = setup(&o).unwrap();
        assert!(
            r.files.iter().all(|(_, a)| *a == FileAction::Created),
            "{r:?}"
        );
        let key = dir.path().join("etc/hotbackup/db1.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let key_before = std::fs::read(&key).unwrap();

        let r = setup(&o).unwrap();
        assert!(
            r.files.iter().all(|(_, a)| *a == FileAction::Unchanged),
            "{r:?}"
        );
        assert_eq!(std::fs::read(&key).unwrap(), key_before, "the key is kept");

        let mut changed = o.clone();
        changed.port = 2001;
        let cfg_before = std::fs::read(dir.path().join("etc/hotbackup/db1.toml")).unwrap();
        let err = setup(&changed).unwrap_err();
        assert!(matches!(err, SetupError::Exists(_)), "{err}");
        assert_eq!(err.exit_code(), 3);
        assert_eq!(
            std::fs::read(dir.path().join("etc/hotbackup/db1.toml")).unwrap(),
            cfg_before,
            "nothing changed on refusal"
        );
        changed.force = true;
        let r = setup(&changed).unwrap();
        assert_eq!(r.files[1].1, FileAction::Replaced);
        assert_eq!(r.files[0].1, FileAction::Unchanged);
    }

    #[test]
    fn imported_key_replaces_only_with_force_and_short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("peer.key");
        std::fs::write(&src, "another-key-of-the-pair-0123456789\n").unwrap();
        let mut o = opts(dir.path());
        setup(&o).unwrap();
        o.key_file = Some(src.clone());
        assert!(matches!(setup(&o), Err(SetupError::Exists(_))));
        o.force = true;
        setup(&o).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("etc/hotbackup/db1.key")).unwrap(),
            std::fs::read(&src).unwrap()
        );
        std::fs::write(&src, "short\n").unwrap();
        let err = setup(&o).unwrap_err();
        assert!(matches!(err, SetupError::BadKey { .. }), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_taken_port_is_refused_naming_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let mut o = opts(dir.path());
        o.port = l.local_addr().unwrap().port();
        o.skip_port_check = false;
        o.client_listen = "127.0.0.1:0".parse().unwrap();
        let err = setup(&o).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SetupError::PortTaken { .. }), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(!dir.path().join("etc/hotbackup/db1.toml").exists());
    }

    #[test]
    fn unknown_user_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.user = "no-such-user-hb-test".into();
        let err = setup(&o).unwrap_err();
        assert!(matches!(err, SetupError::NoUser(_)));
        assert_eq!(err.exit_code(), 2);
    }
}
