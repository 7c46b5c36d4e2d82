//! One link connection: a non-blocking socket with the frame codec, buffers and timers.
//!
//! A [`Peer`] knows how to read frames, queue frames, flush, and how long it has been quiet.
//! What the frames mean, and what to answer, is the manager's business ([`super::manager`]).

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use super::auth::{DialerAuth, ListenerAuth, PeerId};
use super::frame::{Decoder, Encoder, Frame, FrameError, PRE_AUTH_MAX, SessionKey, Side};

/// Where a connection is in its life.
pub enum Phase {
    /// Dialer: TCP connect in progress.
    Connecting,
    /// Dialer: HELLO sent, waiting for CHALLENGE.
    DialerAuth(Option<DialerAuth>),
    /// Listener: waiting for HELLO.
    ListenerHello,
    /// Listener: CHALLENGE sent, waiting for PROOF.
    ListenerProof(Option<ListenerAuth>),
    /// Authenticated: IDENT sent, waiting for the peer's.
    Ident,
    /// Authenticated and identified: the manager's replication state takes over.
    Ready,
}

pub struct Peer {
    pub stream: TcpStream,
    /// "host:port" of the other end.
    pub addr: String,
    pub side: Side,
    pub phase: Phase,
    pub who: Option<PeerId>,
    enc: Encoder,
    dec: Decoder,
    inbuf: Vec<u8>,
    in_pos: usize,
    pub out: Vec<u8>,
    out_pos: usize,
    pub last_recv: Instant,
    /// When the last whole frame was decoded (or the connection made).
    pub last_frame: Instant,
    pub last_send: Instant,
    pub connected_at: Instant,
    pub closed: bool,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Why reading from a peer stopped.
#[derive(Debug)]
pub enum ReadEnd {
    /// The peer closed or the socket failed.
    Closed(String),
    /// A frame did not pass the codec (bad magic, seq, MAC, length).
    Bad(FrameError),
}

impl Peer {
    pub fn new(stream: TcpStream, addr: String, side: Side, max_frame: usize) -> Peer {
        let peer_side = match side {
            Side::Dialer => Side::Listener,
            Side::Listener => Side::Dialer,
        };
        let now = Instant::now();
        Peer {
            stream,
            addr,
            side,
            phase: match side {
                Side::Dialer => Phase::Connecting,
                Side::Listener => Phase::ListenerHello,
            },
            who: None,
            enc: Encoder::new(side),
            dec: Decoder::new(peer_side, max_frame.max(PRE_AUTH_MAX)),
            inbuf: Vec::new(),
            in_pos: 0,
            out: Vec::new(),
            out_pos: 0,
            last_recv: now,
            last_frame: now,
            last_send: now,
            connected_at: now,
            closed: false,
            frames_in: 0,
            frames_out: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// From now on every frame both ways carries a MAC under the session key.
    pub fn authenticate(&mut self, key: &SessionKey) {
        self.enc.authenticate(key.clone());
        self.dec.authenticate(key.clone());
    }

    /// Queues one frame.
    pub fn send(&mut self, ty: u8, payload: &[u8]) {
        self.enc.encode(ty, payload, &mut self.out);
        self.frames_out += 1;
        self.last_send = Instant::now();
    }

    /// Bytes queued and not yet written to the socket.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads what the socket has (up to `limit` buffered bytes).
    pub fn read_in(&mut self, scratch: &mut [u8], limit: usize) -> Result<(), ReadEnd> {
        loop {
            if self.inbuf.len() - self.in_pos >= limit {
                return Ok(());
            }
            match self.stream.read(scratch) {
                Ok(0) => return Err(ReadEnd::Closed("the peer closed the connection".into())),
                Ok(n) => {
                    if self.in_pos > 0 && self.in_pos == self.inbuf.len() {
                        self.inbuf.clear();
                        self.in_pos = 0;
                    }
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.bytes_in += n as u64;
                    self.last_recv = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadEnd::Closed(e.to_string())),
            }
        }
    }

    /// The next complete frame buffered, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ReadEnd> {
        match self.dec.decode(&self.inbuf[self.in_pos..]) {
            Ok(Some((f, used))) => {
                self.in_pos += used;
                self.frames_in += 1;
                self.last_frame = Instant::now();
                if self.in_pos == self.inbuf.len() {
                    self.inbuf.clear();
                    self.in_pos = 0;
                } else if self.in_pos > 1 << 20 {
                    self.inbuf.drain(..self.in_pos);
                    self.in_pos = 0;
                }
                Ok(Some(f))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ReadEnd::Bad(e)),
        }
    }

    /// A frame that started arriving and does not progress: bytes keep coming (so the peer
    /// is not silent) but the frame does not end, as when a bit flipped in its length field
    /// made it look longer than it is and only heartbeats trickle in behind it. After
    /// `timeout` without a whole frame, the frame must have been arriving at 64 KiB/s at least
    /// (any real link is faster; heartbeats are a few hundred bytes a second). Some(why) when
    /// it has not.
    pub fn stalled_frame(&self, timeout: std::time::Duration) -> Option<String> {
        const MIN_RATE: f64 = 64.0 * 1024.0;
        let partial = &self.inbuf[self.in_pos..];
        if partial.len() < 8 {
            return None;
        }
        let waited = self.last_frame.elapsed();
        let over = waited.checked_sub(timeout)?;
        if (partial.len() as f64) >= over.as_secs_f64() * MIN_RATE {
            return None;
        }
        let len = u32::from_le_bytes([partial[4], partial[5], partial[6], partial[7]]);
        Some(format!(
            "a frame stating {len} bytes has not completed in {:.1}s and hardly progresses ({} bytes of it arrived): a corrupted length; resyncing",
            waited.as_secs_f64(),
            partial.len()
        ))
    }

    /// Writes queued bytes until done or the socket is full. Err: the connection broke.
    pub fn flush(&mut self) -> Result<(), String> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err("the socket refused more bytes".into()),
                Ok(n) => {
                    self.out_pos += n;
                    self.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 8 << 20 {
                self.out.shrink_to(1 << 20);
            }
        } else if self.out_pos > 4 << 20 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Name for logs: the peer's instance name once known, else its address.
    pub fn label(&self) -> String {
        match &self.who {
            Some(w) if !w.name.is_empty() => format!("{} ({})", w.name, self.addr),
            _ => self.addr.clone(),
        }
    }
}
