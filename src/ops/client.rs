//! A small blocking RESP client: how the admin tools talk to a running daemon.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::resp::{self, Limits, ParseError, Value, encode};

pub struct Client {
    stream: Box<dyn ReadWrite>,
    buf: Vec<u8>,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Client {
    pub fn tcp(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Client {
            stream: Box::new(s),
            buf: Vec::new(),
        })
    }

    pub fn unix(path: &Path, timeout: Duration) -> io::Result<Client> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Client {
            stream: Box::new(s),
            buf: Vec::new(),
        })
    }

    /// Connects to the daemon of a config: its Unix socket if it has one, else its TCP
    /// address (a wildcard address is reached on loopback); authenticates if needed.
    pub fn for_config(cfg: &Config, timeout: Duration) -> io::Result<Client> {
        let mut c = match (&cfg.client.unix_socket, cfg.client.listen) {
            (Some(p), _) if p.exists() => Client::unix(p, timeout)?,
            (_, Some(mut a)) => {
                if a.ip().is_unspecified() {
                    a.set_ip(if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                Client::tcp(a, timeout)?
            }
            (Some(p), None) => Client::unix(p, timeout)?,
            (None, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the config names no client address",
                ));
            }
        };
        if let Some(pass) = &cfg.client.requirepass {
            if let Value::Error(e) = c.call(&[b"AUTH", pass.as_bytes()])? {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, e));
            }
        }
        Ok(c)
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        let mut req = Vec::new();
        encode::request(&mut req, args);
        self.stream.write_all(&req)?;
        let limits = Limits::default();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match resp::parse_value(&self.buf, &limits) {
                Ok((v, n)) => {
                    self.buf.drain(..n);
                    return Ok(v);
                }
                Err(ParseError::Incomplete) => {}
                Err(ParseError::Protocol(m)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, m));
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A map or flat key/value array reply as (key, value) strings.
pub fn pairs(v: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| match v {
        Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Simple(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => (*b as u8).to_string(),
        Value::Double(d) => d.to_string(),
        Value::Nil => String::new(),
        other => format!("{other:?}"),
    };
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Value::Array(a) => a
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (text(&c[0]), text(&c[1])))
            .collect(),
        _ => Vec::new(),
    }
}
