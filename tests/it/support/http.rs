//! A small HTTP/1.1 client for the daemon's listener: whole responses with binary bodies, and responses
//! that never end (MJPEG, server-sent events) read piece by piece. Paths go out exactly as given, so
//! tests choose every byte of the request line.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test waits for any response.
const RESPONSE_SECS: u64 = 20;

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, path, &[]).await
}

/// `GET path` with extra headers; reads the whole response.
pub async fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut open = open(addr, path, headers).await;
    let mut body = Vec::new();
    let read = async {
        while let Some(piece) = open.piece().await {
            body.extend_from_slice(&piece);
        }
    };
    tokio::time::timeout(Duration::from_secs(RESPONSE_SECS), read)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: the response did not end"));
    Response {
        status: open.status,
        headers: open.headers,
        body,
    }
}

/// A response being read.
pub struct Open {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    /// Body bytes left to read when the length is known.
    remaining: Option<usize>,
    /// Body bytes read but not yet taken.
    pending: Vec<u8>,
}

/// Sends `GET path` and reads the status line and headers.
pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Open {
    let stream = TcpStream::connect(addr).await.expect("connecting to mqimg");
    send(stream, path, headers).await
}

/// Like [`open`], with a receive buffer of `bytes` that the test reads no further than the response
/// head: a stuck viewer. Returns the status and the connection.
pub async fn open_stuck(addr: SocketAddr, path: &str, bytes: u32) -> (u16, TcpStream) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .set_recv_buffer_size(bytes)
        .expect("a small receive buffer");
    let mut stream = socket.connect(addr).await.expect("connecting to mqimg");
    let head = format!("GET {path} HTTP/1.1\r\nHost: mqimg\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("sending the request");
    // Byte by byte, so nothing of the body is read.
    let mut head = Vec::new();
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.expect("the response head"));
        }
    };
    tokio::time::timeout(Duration::from_secs(RESPONSE_SECS), read_head)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no response head"));
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, stream)
}

async fn send(mut stream: TcpStream, path: &str, headers: &[(&str, &str)]) -> Open {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: mqimg\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("sending the request");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read_head = async {
        reader.read_line(&mut line).await.expect("the status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: not an HTTP response: {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await.expect("a header line");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        (status, headers)
    };
    let (status, headers) = tokio::time::timeout(Duration::from_secs(RESPONSE_SECS), read_head)
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no response head"));
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let remaining = find("content-length").and_then(|v| v.parse().ok());
    Open {
        reader,
        status,
        headers,
        chunked,
        remaining: if chunked { None } else { remaining },
        pending: Vec::new(),
    }
}

impl Open {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body (a chunk, or what arrived), `None` at its end.
    async fn piece(&mut self) -> Option<Vec<u8>> {
        if self.chunked {
            let mut size = String::new();
            self.reader.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.ok()?;
            chunk.truncate(size);
            return Some(chunk);
        }
        let want = self.remaining.map_or(64 * 1024, |r| r.min(64 * 1024));
        if want == 0 {
            return None;
        }
        let mut buf = vec![0; want];
        let n = self.reader.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.truncate(n);
        if let Some(r) = &mut self.remaining {
            *r -= n;
        }
        Some(buf)
    }

    /// Body bytes up to and including the first `needle`, waiting up to `secs` for it; `None` when
    /// it does not come (or the body ends first). What follows the needle stays for the next call.
    pub async fn until(&mut self, needle: &[u8], secs: f64) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        loop {
            if let Some(at) = find(&self.pending, needle) {
                let rest = self.pending.split_off(at + needle.len());
                return Some(std::mem::replace(&mut self.pending, rest));
            }
            let piece = tokio::time::timeout_at(deadline, self.piece())
                .await
                .ok()??;
            self.pending.extend_from_slice(&piece);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
