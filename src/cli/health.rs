//! `mqimg health`: asks a running daemon's `/readyz` whether it is ready, for container health checks
//! and scripts (a slim image has no curl). Exit 0 only on HTTP 200; anything else, a refusal included,
//! exits 1 with the reason on stderr (Docker reserves exit 2).
//!
//! A plain HTTP/1.1 GET over `std::net::TcpStream`: the endpoint is the daemon's own, on loopback or
//! the container's network, so no client library or TLS is needed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

use crate::config::Settings;

/// How long the whole probe may take: connecting, asking and reading the answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an answer read: `/readyz` says one line.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// `mqimg health [-c FILE] [--url URL]`.
pub fn run(config: Option<&Path>, url: Option<&str>) -> ExitCode {
    let outcome = target(config, url).and_then(|target| {
        let answer =
            probe(&target, TIMEOUT).with_context(|| format!("cannot reach {}", target.url()))?;
        Ok((target, answer))
    });
    match outcome {
        Ok((_, (200, body))) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((target, (status, body))) => {
            eprintln!(
                "mqimg: not ready: {} answered {status}: {}",
                target.url(),
                body.trim_end()
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("mqimg: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where to ask: `host:port` to connect to, the `Host` header and the path.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
    /// `http.token`, sent as a bearer header: every route but `/healthz` needs it when set.
    pub token: Option<String>,
}

impl Target {
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// `--url`, else the readiness endpoint of the config's `http.listen` (a wildcard address is asked
/// on loopback), with the config's `http.token`.
fn target(config: Option<&Path>, url: Option<&str>) -> anyhow::Result<Target> {
    let settings = Settings::load(config)?;
    let token = settings.http.token.as_ref().map(|t| t.expose().to_owned());
    if let Some(url) = url {
        let mut target = parse_url(url)?;
        target.token = token;
        return Ok(target);
    }
    let Some(listen) = settings.http.listen else {
        bail!(
            "http.listen (MQIMG__HTTP__LISTEN) is off, so the daemon answers no probe: set it, or \
             pass --url"
        );
    };
    Ok(Target {
        authority: SocketAddr::new(reachable(listen.ip()), listen.port()).to_string(),
        path: "/readyz".into(),
        token,
    })
}

/// A listening address as a client reaches it: `0.0.0.0` and `::` by loopback.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        other => other,
    }
}

/// `http://host[:port][/path]`; the port defaults to 80 and the path to `/readyz`.
pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url {url:?}: expected http://host:port/readyz"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/readyz"),
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("--url {url:?}: expected http://host:port/readyz");
    }
    let has_port = match authority.rfind(':') {
        Some(colon) => !authority[colon..].contains(']'),
        None => false,
    };
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority,
        path: path.to_owned(),
        token: None,
    })
}

/// GETs `target` within `timeout`: the status code and body.
pub fn probe(target: &Target, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow!("no answer within {} s", timeout.as_secs_f64()))
    };
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.authority))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match (stream, last) {
        (Some(stream), _) => stream,
        (None, Some(error)) => return Err(error.into()),
        (None, None) => bail!("{} resolves to no address", target.authority),
    };
    stream.set_write_timeout(Some(left()?))?;
    let auth = target
        .token
        .as_ref()
        .map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    // One write: `write!` straight to the socket sends each piece on its own, and a server that
    // answers the first piece and closes turns the next write into a broken pipe.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mqimg-health\r\n{auth}Connection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let mut limited = (&mut stream).take(MAX_RESPONSE_BYTES);
    loop {
        limited.get_mut().set_read_timeout(Some(left()?))?;
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no answer within {} s", timeout.as_secs_f64())
            }
            Err(e) => return Err(e.into()),
        }
    }
    parse_response(&response)
}

/// The status code and body of an HTTP/1.x response (chunked bodies joined).
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            let excerpt: String = status_line.chars().take(80).collect();
            anyhow!("not an HTTP answer: {excerpt:?}")
        })?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use std::net::TcpListener;

    use super::*;

    /// A one-shot server answering `response` to the first request; its URL.
    fn serve(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // The whole request, as a real server reads it, before answering.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes());
        });
        format!("http://{addr}/readyz")
    }

    fn ask(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
        probe(&parse_url(url).unwrap(), timeout)
    }

    #[test]
    fn a_200_answer_is_ready_and_others_carry_their_body() {
        let url = serve("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\n");
        assert_eq!(ask(&url, TIMEOUT).unwrap(), (200, "ready\n".into()));
        let url = serve(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 28\r\n\r\nnot connected to the broker\n",
        );
        assert_eq!(
            ask(&url, TIMEOUT).unwrap(),
            (503, "not connected to the broker\n".into())
        );
        let url = serve(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n3\r\ndy\n\r\n0\r\n\r\n",
        );
        assert_eq!(ask(&url, TIMEOUT).unwrap(), (200, "ready\n".into()));
    }

    #[test]
    fn silence_garbage_and_refusals_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = format!("http://{}/readyz", listener.local_addr().unwrap());
        let error = ask(&silent, Duration::from_millis(200)).unwrap_err();
        assert!(
            error.to_string().contains("no answer within 0.2 s"),
            "{error}"
        );
        drop(listener);
        let error = ask(&silent, TIMEOUT).unwrap_err();
        assert!(error.to_string().contains("refused"), "{error}");
        let url = serve("SSH-2.0-OpenSSH\r\n");
        let error = ask(&url, TIMEOUT).unwrap_err();
        assert!(error.to_string().contains("not an HTTP answer"), "{error}");
    }

    #[test]
    fn urls_default_the_port_and_path_and_wildcards_are_asked_on_loopback() {
        let target = |url: &str| parse_url(url).unwrap();
        assert_eq!(
            target("http://mqimg:9464").url(),
            "http://mqimg:9464/readyz"
        );
        assert_eq!(
            target("http://mqimg/healthz").url(),
            "http://mqimg:80/healthz"
        );
        assert_eq!(target("http://[::1]:9464/readyz").authority, "[::1]:9464");
        assert_eq!(target("http://[::1]/readyz").authority, "[::1]:80");
        assert!(parse_url("https://mqimg:9464").is_err());
        assert!(parse_url("mqimg:9464").is_err());
        assert_eq!(
            reachable("0.0.0.0".parse().unwrap()),
            IpAddr::from(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            reachable("::".parse().unwrap()),
            IpAddr::from(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            reachable("10.1.2.3".parse().unwrap()).to_string(),
            "10.1.2.3"
        );
    }

    #[test]
    fn the_config_names_the_endpoint_and_off_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mqimg.toml");
        std::fs::write(
            &config,
            "[http]\nlisten = \"0.0.0.0:9999\"\ntoken = \"s3cret\"\n",
        )
        .unwrap();
        let found = target(Some(&config), None).unwrap();
        assert_eq!(found.url(), "http://127.0.0.1:9999/readyz");
        assert_eq!(found.token.as_deref(), Some("s3cret"));
        std::fs::write(&config, "[http]\nlisten = \"\"\n").unwrap();
        let error = target(Some(&config), None).unwrap_err().to_string();
        assert!(
            error.contains("http.listen (MQIMG__HTTP__LISTEN) is off"),
            "{error}"
        );
    }
}
