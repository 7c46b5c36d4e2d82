//! `hotbackup`: the daemon and its admin commands. Parsing and dispatch only; the work is in
//! the library (`server`, `ops`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hotbackup::config::Config;
use hotbackup::datadir::DataDir;
use hotbackup::ops::{journal_cmd, port_check, role_cmd, status};

#[derive(Parser)]
#[command(
    name = "hotbackup",
    version,
    about = "Hot-standby database for Linux: journaled, replicated, speaks the Redis protocol",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the database daemon in the foreground (systemd runs it this way).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Override the config's log level (error, warn, info, debug, trace).
        #[arg(long)]
        log_level: Option<log::LevelFilter>,
    },
    /// Show an instance's state: from the running daemon, or from its data directory.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print only this field's value (e.g. role, writes, generation, links; a running
        /// daemon's fields, else the data directory's); an empty line when it has none.
        #[arg(long, value_name = "NAME", conflicts_with = "json")]
        field: Option<String>,
    },
    /// Statistics of the running daemon and of each link (state, frames and bytes, reconnects,
    /// syncs, acknowledged LSNs, queue): counted since the daemon started, reset on restart.
    /// Exit codes: 0 shown, 3 not running.
    Stats {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make this node the master (a slave: a new generation, writable at once; works when the
    /// old master is unreachable, and on a stopped node). Exit codes: 0 done or already master,
    /// 1 failed, 2 bad usage/config, 3 refused (this node was fenced: rejoin it instead).
    Promote {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Make this node a slave of its configured peer (after it was fenced, or to rebuild a wiped
    /// slave): what it holds that the master never got is exported to a lost-transactions file,
    /// then it catches up. Exit codes: 0 in sync (or already a slave with --no-wait), 1 failed,
    /// 2 bad usage/config, 3 refused (a writable master without --force), 4 timed out.
    Rejoin {
        #[command(flatten)]
        config: ConfigArg,
        /// Also when this node is a writable master that was not fenced.
        #[arg(long)]
        force: bool,
        /// Return once the node is a slave, without waiting until it is in sync.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait until it is in sync (seconds).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// The incidents this node keeps (link down/up, fencing, canary, verify, disk full, …),
    /// oldest first: from the running daemon, or from the data directory when stopped.
    Incidents {
        #[command(flatten)]
        config: ConfigArg,
        /// Only those since: a duration back from now ("10m", "2h", "3d") or a UTC time
        /// ("2026-11-29T12:00").
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Print a JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Online verify: the master puts a checksum marker into the stream; each slave compares
    /// every logged file with its upstream at exactly that LSN (writes go on) and names the
    /// differing items. Exit codes: 0 all match, 1 mismatch, 3 could not compare, 4 timed out.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Show the last run instead of starting one (on any node).
        #[arg(long)]
        last: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// How long to wait for every slave's outcome (seconds).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Planned role swap with zero loss, run against either node: the master pauses writes,
    /// waits until its slave has everything, the slave takes over, the old master follows it.
    /// Exit codes: 0 done, 1 failed/unsettled, 2 bad usage/config, 3 refused (not running, or
    /// no slave streaming; nothing changed), 4 aborted (the slave did not catch up within
    /// link.switchover_timeout; the old master resumed).
    Switchover {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The journal: check and dump (read-only, safe while the daemon runs), export tapes (safe
    /// while it runs), load tapes.
    Journal {
        #[command(subcommand)]
        cmd: JournalCmd,
    },
    /// Save a consistent snapshot of the running node (master or slave) to a file, while
    /// writes go on; progress on stderr.
    Save {
        #[command(flatten)]
        config: ConfigArg,
        /// The save file to write.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Build a node from a save file, into an empty data directory (then `journal load`
    /// tapes from the save's LSN + 1, and start it).
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// The save file.
        file: PathBuf,
    },
    /// Start a master and its slave on loopback (ports 7379/7380, link 2001/2002), for trying
    /// hotbackup out; Ctrl-C stops both.
    LocalPair {
        /// Where the configs, key and data go (default: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The master's client port.
        #[arg(long, default_value_t = 7379)]
        master_port: u16,
        /// The slave's client port.
        #[arg(long, default_value_t = 7380)]
        slave_port: u16,
        /// The master's link port.
        #[arg(long, default_value_t = 2001)]
        master_link_port: u16,
        /// The slave's link port.
        #[arg(long, default_value_t = 2002)]
        slave_link_port: u16,
    },
    /// Prepare this host to run instance NAME under systemd: checks the ports, writes
    /// /etc/hotbackup/NAME.toml from a template, the pair's key /etc/hotbackup/NAME.key (0600,
    /// owned by the service user; new, or imported with --key-file) and the link port drop-in
    /// of hotbackup-slave@NAME.socket; prints the commands to run next. Idempotent; a file
    /// with other contents is never replaced without --force. Exit codes: 0 done or already
    /// so, 1 failed, 2 bad usage, 3 refused (a file differs, a port is taken).
    /// Forms: `setup NAME --role master|slave ...` or `setup master|slave NAME ...`.
    #[command(
        override_usage = "hotbackup setup NAME --role <ROLE> --peer <HOST:PORT> [OPTIONS]\n       \
                                hotbackup setup <ROLE> NAME --peer <HOST:PORT> [OPTIONS]"
    )]
    Setup {
        /// NAME, or ROLE NAME: the instance (database) name (/etc/hotbackup/NAME.toml,
        /// hotbackup-ROLE@NAME), after the role when --role is not given.
        #[arg(value_name = "NAME", num_args = 1..=2, required = true)]
        words: Vec<String>,
        /// The role the instance starts with.
        #[arg(long, value_enum)]
        role: Option<SetupRoleArg>,
        /// This node's hot-backup link port (the same on both nodes is simplest).
        #[arg(long, default_value_t = 2000)]
        port: u16,
        /// The address the link port listens on.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
        listen_address: std::net::IpAddr,
        /// The partner node's link address, HOST:PORT (repeat for several).
        #[arg(long = "peer", value_name = "HOST:PORT", required = true)]
        peers: Vec<String>,
        /// Where clients connect, ADDR:PORT.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7379")]
        client_listen: std::net::SocketAddr,
        /// Import the pair's key from FILE (the other node's key) instead of making a new one.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// The service user that owns the key file.
        #[arg(long, default_value = "hotbackup")]
        user: String,
        /// Replace files that exist with other contents.
        #[arg(long)]
        force: bool,
        /// Do not check that the link and client ports are free.
        #[arg(long)]
        skip_port_check: bool,
        /// Write under DIR instead of / (image builds, tests); also HOTBACKUP_ROOT.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// A service (virtual) address for the master unit to hold: "ADDR/PREFIX dev IFACE"
        /// ([service] address).
        #[arg(long, value_name = "ADDR/PREFIX dev IFACE", value_parser = parse_service_address)]
        address: Option<hotbackup::config::ServiceAddress>,
    },
    /// Add (up) or remove (down) the instance's service address ([service] address): run by
    /// hotbackup-master@.service as root when it starts and stops. `up` first checks that no
    /// other host answers for it (arping -D), then announces it (arping -U). Exit codes: 0 done
    /// or nothing to do (also when another host holds the address: it is then not taken, and
    /// an error is logged), 1 failed, 2 bad usage/config.
    ServiceAddress {
        /// up or down.
        #[arg(value_enum)]
        action: AddressAction,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write the man pages and shell completions generated from this CLI into DIR
    /// (packaging; DIR/man1/*.1, DIR/completions/{hotbackup.bash,_hotbackup,hotbackup.fish}).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory.
        dir: PathBuf,
    },
    /// Is a TCP port free on this host? If not, which process holds it (like netstat -tlnp).
    PortCheck {
        /// The TCP port.
        port: u16,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AddressAction {
    Up,
    Down,
}

fn parse_service_address(s: &str) -> Result<hotbackup::config::ServiceAddress, String> {
    hotbackup::config::ServiceAddress::parse(s)
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SetupRoleArg {
    Master,
    Slave,
}

#[derive(Args)]
struct ConfigArg {
    /// The instance's config file, e.g. /etc/hotbackup/db1.toml.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum JournalCmd {
    /// Verify every segment and record: exit 0 if start-up would succeed, 1 if corrupt.
    /// A single file (tape, archived segment) must be whole and continuous.
    Check {
        /// The instance's config file (its data_dir's journal is checked).
        #[arg(
            short,
            long,
            value_name = "FILE",
            conflicts_with_all = ["dir", "path"],
            required_unless_present_any = ["dir", "path"]
        )]
        config: Option<PathBuf>,
        /// A journal directory to check instead.
        #[arg(long, value_name = "DIR", conflicts_with = "path")]
        dir: Option<PathBuf>,
        /// A journal directory or a single journal file (tape, segment) to check instead.
        path: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print journal records by LSN.
    Dump {
        /// The instance's config file (its data_dir's journal is read).
        #[arg(
            short,
            long,
            value_name = "FILE",
            conflicts_with = "path",
            required_unless_present = "path"
        )]
        config: Option<PathBuf>,
        /// A journal directory or a single journal file (segment, tape) to read instead.
        path: Option<PathBuf>,
        /// First LSN to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// One JSON object per record instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy journal records (an LSN range) to a tape file; safe while the daemon runs. Only
    /// durable records are exported.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// First LSN to export.
        #[arg(long)]
        from: u64,
        /// Last LSN to export (default: the last durable one).
        #[arg(long)]
        to: Option<u64>,
        /// The tape to write (must not exist).
        file: PathBuf,
    },
    /// Append tapes (or archived segments) to a STOPPED node's journal, keeping their LSNs:
    /// checks the database id, continuity and generations; records already there are skipped.
    /// With --to, replay them instead on a RUNNING master as new transactions (new LSNs).
    Load {
        /// The stopped node's config file.
        #[arg(
            short,
            long,
            value_name = "FILE",
            conflicts_with = "to",
            required_unless_present = "to"
        )]
        config: Option<PathBuf>,
        /// Replay on the master at HOST:PORT (its client port) as new transactions (HB.APPLY).
        #[arg(long, value_name = "HOST:PORT")]
        to: Option<String>,
        /// The master's password (requirepass), with --to.
        #[arg(long, requires = "to")]
        password: Option<String>,
        /// Tape files, in any order (they are taken by LSN).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("hotbackup: {e}");
        ExitCode::from(2)
    })
}

fn journal_dir(config: Option<PathBuf>, other: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    match (config, other) {
        (_, Some(p)) => Ok(p),
        (Some(c), None) => Ok(DataDir::new(&load(&c)?.data_dir).journal_dir()),
        (None, None) => {
            eprintln!("hotbackup: give --config FILE or a journal path");
            Err(ExitCode::from(2))
        }
    }
}

/// Prints a role command's message (stdout when done, stderr otherwise) and gives its code.
fn role_exit(o: role_cmd::Outcome) -> ExitCode {
    if o.exit == role_cmd::Exit::Done {
        println!("{}", o.message);
    } else {
        eprintln!("hotbackup: {}", o.message);
    }
    ExitCode::from(o.exit as u8)
}

fn run(cli: Cli) -> Result<ExitCode, ExitCode> {
    match cli.cmd {
        Cmd::Serve { config, log_level } => {
            let cfg = load(&config.config)?;
            let level = log_level.unwrap_or(cfg.log.level);
            if let Err(e) = hotbackup::systemd::init_logging(&cfg.instance, level) {
                eprintln!("hotbackup: cannot set up logging: {e}");
            }
            match hotbackup::server::serve(&cfg) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    log::error!("{e}");
                    eprintln!("hotbackup: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Status {
            config,
            json,
            field,
        } => {
            let cfg = load(&config.config)?;
            let st = status::status(&cfg);
            if let Some(k) = field {
                println!("{}", st.field(&k).unwrap_or_default());
            } else if json {
                println!("{}", st.to_json(&cfg));
            } else {
                print!("{}", st.render_human(&cfg));
            }
            Ok(ExitCode::from(st.exit_code() as u8))
        }
        Cmd::Stats { config, json } => {
            let cfg = load(&config.config)?;
            match hotbackup::ops::stats_cmd::fetch(&cfg) {
                Ok(st) => {
                    if json {
                        println!("{}", st.to_json());
                    } else {
                        print!("{}", st.render_human());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ hotbackup::ops::stats_cmd::StatsError::NotRunning(_)) => {
                    eprintln!("hotbackup: stats: {e}");
                    Err(ExitCode::from(3))
                }
                Err(e) => {
                    eprintln!("hotbackup: stats: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Promote { config } => {
            let cfg = load(&config.config)?;
            Ok(role_exit(role_cmd::promote(&cfg)))
        }
        Cmd::Rejoin {
            config,
            force,
            no_wait,
            timeout,
        } => {
            let cfg = load(&config.config)?;
            let opts = role_cmd::RejoinOpts {
                force,
                no_wait,
                timeout: std::time::Duration::from_secs(timeout),
            };
            Ok(role_exit(role_cmd::rejoin(
                &cfg,
                &opts,
                &mut std::io::stderr(),
            )))
        }
        Cmd::Incidents {
            config,
            since,
            json,
        } => {
            let cfg = load(&config.config)?;
            let since_ms = match since {
                None => 0,
                Some(s) => {
                    match hotbackup::ops::incidents_cmd::parse_since(&s, hotbackup::txn::now_ms()) {
                        Ok(v) => v,
                        Err(e) => {
                            eprintln!("hotbackup: {e}");
                            return Err(ExitCode::from(2));
                        }
                    }
                }
            };
            match hotbackup::ops::incidents_cmd::fetch(&cfg, since_ms) {
                Ok(list) => {
                    print!("{}", hotbackup::ops::incidents_cmd::render(&list, json));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hotbackup: incidents: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Verify {
            config,
            last,
            json,
            timeout,
        } => {
            let cfg = load(&config.config)?;
            let o = hotbackup::ops::verify_cmd::verify(
                &cfg,
                last,
                json,
                std::time::Duration::from_secs(timeout),
            );
            if o.code == 0 || o.code == 1 {
                print!("{}", o.text);
            } else {
                eprintln!("hotbackup: verify: {}", o.text.trim_end());
            }
            if o.code == 0 {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(ExitCode::from(o.code))
            }
        }
        Cmd::Switchover { config } => {
            let cfg = load(&config.config)?;
            Ok(role_exit(role_cmd::switchover(
                &cfg,
                &mut std::io::stderr(),
            )))
        }
        Cmd::Journal { cmd } => match cmd {
            JournalCmd::Check {
                config,
                dir,
                path,
                json,
            } => {
                let dir = journal_dir(config, dir.or(path))?;
                let report = journal_cmd::check_path(&dir);
                if json {
                    println!("{}", report.to_json(&dir));
                } else {
                    print!("{}", report.render_human(&dir));
                }
                Ok(if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            JournalCmd::Dump {
                config,
                path,
                from,
                limit,
                json,
            } => {
                let path = journal_dir(config, path)?;
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                match journal_cmd::dump(&path, from, limit, json, &mut out) {
                    Ok(_) => Ok(ExitCode::SUCCESS),
                    Err(journal_cmd::DumpError::Out(e))
                        if e.kind() == std::io::ErrorKind::BrokenPipe =>
                    {
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        drop(out);
                        eprintln!("hotbackup: {e}");
                        Err(ExitCode::FAILURE)
                    }
                }
            }
            JournalCmd::Export {
                config,
                from,
                to,
                file,
            } => {
                let cfg = load(&config.config)?;
                match hotbackup::ops::export::export_node(&cfg, from, to, &file) {
                    Ok(s) => {
                        println!("{}", hotbackup::ops::export::describe(&s));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        eprintln!("hotbackup: journal export: {e}");
                        Err(ExitCode::FAILURE)
                    }
                }
            }
            JournalCmd::Load {
                to: Some(to),
                password,
                files,
                ..
            } => match hotbackup::ops::replay::replay(&to, password.as_deref(), &files) {
                Ok(r) => {
                    println!("{}", r.render_human());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hotbackup: journal load --to: {e}");
                    Err(ExitCode::FAILURE)
                }
            },
            JournalCmd::Load {
                config,
                to: None,
                files,
                ..
            } => {
                let Some(config) = config else {
                    eprintln!("hotbackup: journal load: give --config FILE or --to HOST:PORT");
                    return Err(ExitCode::from(2));
                };
                let cfg = load(&config)?;
                match hotbackup::ops::load::load(&cfg, &files) {
                    Ok(r) => {
                        print!("{}", r.render_human());
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        eprintln!("hotbackup: journal load: {e}");
                        Err(ExitCode::FAILURE)
                    }
                }
            }
        },
        Cmd::Save { config, to, force } => {
            let cfg = load(&config.config)?;
            match hotbackup::ops::save::save(&cfg, &to, force) {
                Ok(r) => {
                    println!("{}", r.render_human());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hotbackup: save: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Restore { config, file } => {
            let cfg = load(&config.config)?;
            match hotbackup::ops::restore::restore(&cfg, &file) {
                Ok(r) => {
                    println!("{}", r.render_human());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hotbackup: restore: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::LocalPair {
            dir,
            master_port,
            slave_port,
            master_link_port,
            slave_link_port,
        } => match hotbackup::ops::local_pair::run(
            dir.as_deref(),
            &hotbackup::ops::local_pair::PairPorts {
                master_client: master_port,
                slave_client: slave_port,
                master_link: master_link_port,
                slave_link: slave_link_port,
            },
        ) {
            Ok(code) => Ok(ExitCode::from(code as u8)),
            Err(e) => {
                eprintln!("hotbackup: local-pair: {e}");
                Err(ExitCode::FAILURE)
            }
        },
        Cmd::Setup {
            words,
            role,
            port,
            listen_address,
            peers,
            client_listen,
            key_file,
            user,
            force,
            skip_port_check,
            root,
            address,
        } => {
            use hotbackup::ops::setup;
            let (role, name) = match (role, words.as_slice()) {
                (Some(r), [name]) => (r, name.clone()),
                (None, [r, name]) => match <SetupRoleArg as clap::ValueEnum>::from_str(r, false) {
                    Ok(r) => (r, name.clone()),
                    Err(_) => {
                        eprintln!(
                            "hotbackup: setup: {r:?} is not a role: use `setup NAME --role master|slave` or `setup master|slave NAME`"
                        );
                        return Err(ExitCode::from(2));
                    }
                },
                (None, [_]) => {
                    eprintln!(
                        "hotbackup: setup: give the role: `setup NAME --role master|slave` (or `setup master|slave NAME`)"
                    );
                    return Err(ExitCode::from(2));
                }
                _ => {
                    eprintln!(
                        "hotbackup: setup: with --role, give only the instance NAME (`setup NAME --role master|slave`)"
                    );
                    return Err(ExitCode::from(2));
                }
            };
            let opts = setup::SetupOpts {
                role: match role {
                    SetupRoleArg::Master => setup::SetupRole::Master,
                    SetupRoleArg::Slave => setup::SetupRole::Slave,
                },
                name,
                port,
                listen_address,
                peers,
                client_listen,
                key_file,
                user,
                root: setup::default_root(root),
                force,
                skip_port_check,
                address,
            };
            match setup::setup(&opts) {
                Ok(r) => {
                    print!("{}", r.render_human());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hotbackup: setup: {e}");
                    Err(ExitCode::from(e.exit_code()))
                }
            }
        }
        Cmd::ServiceAddress { action, config } => {
            use hotbackup::ops::service_address;
            let cfg = load(&config.config)?;
            let r = match action {
                AddressAction::Up => service_address::up(&cfg),
                AddressAction::Down => service_address::down(&cfg),
            };
            match r {
                Ok(o) => {
                    eprintln!("{}", o.describe(&cfg));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("<3>hotbackup: service-address: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::GenerateDocs { dir } => {
            use clap::CommandFactory;
            match hotbackup::ops::docs::write_docs(Cli::command(), &dir) {
                Ok(n) => {
                    println!("wrote {n} file(s) under {}", dir.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("hotbackup: generate-docs: {e}");
                    Err(ExitCode::FAILURE)
                }
            }
        }
        Cmd::PortCheck { port, json } => match port_check::check_port(port) {
            Ok(r) => {
                if json {
                    println!("{}", r.to_json());
                } else {
                    print!("{}", r.render_human());
                }
                Ok(if r.free {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Err(e) => {
                eprintln!("hotbackup: port-check: {e}");
                Err(ExitCode::from(2))
            }
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(c) | Err(c) => c,
    }
}
