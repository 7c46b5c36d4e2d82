//! Connection commands: PING ECHO HELLO AUTH QUIT SELECT CLIENT RESET (PING and RESET also in
//! pub/sub's subscribed mode, with Redis's replies there).

use super::{Args, CmdError, CmdResult, Ctx};
use crate::files;
use crate::resp::{Proto, encode};

pub fn ping(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    if args.len() <= 2 && ctx.conn.subs.is_some() && ctx.conn.proto == Proto::Resp2 {
        // In subscribed mode (RESP2) Redis answers as a pub/sub frame: ["pong", message].
        encode::array_len(ctx.out, 2);
        encode::bulk(ctx.out, b"pong");
        encode::bulk(ctx.out, args.get(1).map_or(&b""[..], |m| &m[..]));
        return Ok(());
    }
    match args.len() {
        1 => encode::simple(ctx.out, "PONG"),
        2 => encode::bulk(ctx.out, &args[1]),
        _ => return Err(CmdError::Arity("ping".into())),
    }
    Ok(())
}

pub fn echo(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    encode::bulk(ctx.out, &args[1]);
    Ok(())
}

fn check_password(ctx: &Ctx<'_>, user: &[u8], pass: &[u8]) -> Result<(), CmdError> {
    let wrong =
        || CmdError::Msg("WRONGPASS invalid username-password pair or user is disabled.".into());
    if user != b"default" {
        return Err(wrong());
    }
    match &ctx.srv.settings.requirepass {
        None => Ok(()),
        Some(p) if constant_time_eq(p.as_bytes(), pass) => Ok(()),
        Some(_) => Err(wrong()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn auth(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let (user, pass) = match args.len() {
        2 => (&b"default"[..], &args[1][..]),
        3 => (&args[1][..], &args[2][..]),
        _ => return Err(CmdError::Syntax),
    };
    if ctx.srv.settings.requirepass.is_none() && args.len() == 2 {
        return Err(CmdError::Msg(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
        ));
    }
    check_password(ctx, user, pass)?;
    ctx.conn.authed = true;
    ctx.ok()
}

pub fn hello(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let mut proto = ctx.conn.proto;
    let mut i = 1;
    if args.len() > 1 {
        proto = match super::parse_i64(&args[1]) {
            Some(2) => Proto::Resp2,
            Some(3) => Proto::Resp3,
            Some(_) => return Err(CmdError::Msg("NOPROTO unsupported protocol version".into())),
            None => {
                return Err(CmdError::Msg(
                    "ERR Protocol version is not an integer or out of range".into(),
                ));
            }
        };
        i = 2;
    }
    let mut name = None;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        if opt == b"auth" && i + 2 < args.len() {
            check_password(ctx, &args[i + 1], &args[i + 2])?;
            ctx.conn.authed = true;
            i += 3;
        } else if opt == b"setname" && i + 1 < args.len() {
            name = Some(valid_client_name(&args[i + 1])?);
            i += 2;
        } else {
            return Err(CmdError::Msg(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    if !ctx.conn.authed {
        return Err(CmdError::Msg(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
        ));
    }
    if let Some(n) = name {
        ctx.conn.name = n;
    }
    ctx.conn.proto = proto;
    let out = &mut *ctx.out;
    encode::map_len(out, 8, proto);
    encode::bulk(out, b"server");
    encode::bulk(out, b"hotbackup");
    encode::bulk(out, b"version");
    encode::bulk(out, super::server::REDIS_VERSION.as_bytes());
    encode::bulk(out, b"hotbackup_version");
    encode::bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
    encode::bulk(out, b"proto");
    encode::integer(out, if proto == Proto::Resp3 { 3 } else { 2 });
    encode::bulk(out, b"id");
    encode::integer(out, ctx.conn.id as i64);
    encode::bulk(out, b"mode");
    encode::bulk(out, b"standalone");
    encode::bulk(out, b"role");
    encode::bulk(out, b"master");
    encode::bulk(out, b"modules");
    encode::array_len(out, 0);
    Ok(())
}

pub fn quit(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    ctx.conn.closing = true;
    ctx.ok()
}

pub fn reset(ctx: &mut Ctx<'_>, _args: Args) -> CmdResult {
    ctx.conn.multi = None;
    ctx.conn.multi_dirty = false;
    ctx.conn.file = files::DEFAULT_FILE.to_string();
    ctx.conn.proto = Proto::Resp2;
    ctx.conn.name = None;
    ctx.conn.authed = ctx.srv.settings.requirepass.is_none();
    // Out of subscribed mode, silently (as Redis: no unsubscribe confirmations).
    ctx.conn.subs = None;
    encode::simple(ctx.out, "RESET");
    Ok(())
}

pub fn select(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let arg = &args[1];
    let file = if !arg.is_empty() && arg.iter().all(|b| b.is_ascii_digit()) {
        match std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        {
            Some(n) => files::numbered(n),
            None => return Err(CmdError::Msg("ERR DB index is out of range".into())),
        }
    } else if arg.first() == Some(&b'-') {
        return Err(CmdError::Msg("ERR DB index is out of range".into()));
    } else {
        files::validate(arg)?
    };
    ctx.conn.file = file;
    ctx.ok()
}

fn valid_client_name(b: &[u8]) -> Result<Option<String>, CmdError> {
    if b.is_empty() {
        return Ok(None);
    }
    if b.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(CmdError::Msg(
            "ERR Client names cannot contain spaces, newlines or special characters.".into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(b).into_owned()))
}

pub fn client(ctx: &mut Ctx<'_>, args: Args) -> CmdResult {
    let sub = args[1].to_ascii_lowercase();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(CmdError::Msg(format!(
                "ERR wrong number of arguments for 'client|{}' command",
                String::from_utf8_lossy(&sub)
            )))
        }
    };
    match &sub[..] {
        b"id" => {
            arity(2)?;
            encode::integer(ctx.out, ctx.conn.id as i64);
        }
        b"setname" => {
            arity(3)?;
            ctx.conn.name = valid_client_name(&args[2])?;
            return ctx.ok();
        }
        b"getname" => {
            arity(2)?;
            match &ctx.conn.name {
                Some(n) => encode::bulk(ctx.out, n.as_bytes()),
                None => encode::null(ctx.out, ctx.conn.proto),
            }
        }
        b"setinfo" => {
            arity(4)?;
            let attr = args[2].to_ascii_lowercase();
            let val = valid_client_name(&args[3])
                .map_err(|_| {
                    CmdError::Msg(
                        "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.".into(),
                    )
                })?;
            match &attr[..] {
                b"lib-name" => ctx.conn.lib_name = val,
                b"lib-ver" => ctx.conn.lib_ver = val,
                _ => {
                    return Err(CmdError::Msg(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&args[2])
                    )));
                }
            }
            return ctx.ok();
        }
        b"info" => {
            arity(2)?;
            let line = ctx.conn.info_line(0, 0) + "\n";
            encode::verbatim(ctx.out, "txt", line.as_bytes(), ctx.conn.proto);
        }
        b"list" => {
            if args.len() > 2 {
                return Err(CmdError::NotSupported("CLIENT LIST with filters".into()));
            }
            let mut lines = ctx.srv.clients.lines();
            lines.push((ctx.conn.id, ctx.conn.info_line(0, 0)));
            lines.sort_by_key(|(id, _)| *id);
            let mut text = String::new();
            for (_, l) in lines {
                text.push_str(&l);
                text.push('\n');
            }
            encode::verbatim(ctx.out, "txt", text.as_bytes(), ctx.conn.proto);
        }
        b"no-evict" | b"no-touch" => {
            arity(3)?;
            match &args[2].to_ascii_lowercase()[..] {
                b"on" | b"off" => return ctx.ok(),
                _ => return Err(CmdError::Syntax),
            }
        }
        _ => {
            return Err(CmdError::NotSupported(format!(
                "CLIENT {}",
                String::from_utf8_lossy(&args[1]).to_uppercase()
            )));
        }
    }
    Ok(())
}
