//! issun-legacy-client: a test client that speaks to the relay exactly the way
//! issun's Rust `QuicClientBackend` does (protocol.md section 9), on a QUIC
//! stack that is not ours (quinn + rustls, from Debian's packaged crates).
//!
//! On the wire, like QuicClientBackend:
//!   - QUIC with TLS 1.3, SNI "localhost", no ALPN at all, certificate not
//!     verified (the backend's development mode);
//!   - handshake: a unidirectional stream carrying our NodeId as 8 bytes
//!     little-endian, then FIN; the server's first unidirectional stream
//!     carries 8 bytes back;
//!   - every event we send: a new unidirectional stream with one frame
//!     ("IS", version 1, type 0x01, u32 LE length, bincode RawNetworkEvent),
//!     then FIN; streams are opened one after the other, in order;
//!   - every event we receive: accept the next unidirectional stream, read an
//!     8-byte header and the payload it announces, decode it, drop the stream.
//!
//! What it adds for the tests is only bookkeeping: which events to send
//! (deterministic payloads), which to expect (checked byte for byte), and a
//! one-line report per step on stdout.  Exit codes: 0 success, 1 a check
//! failed, 2 the QUIC/TLS connection could not be established, 3 the server
//! closed the connection (the code is printed), 4 bad arguments, 5 timeout.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- the types of issun's network module, as bincode sees them ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkMetadata {
    pub sender: NodeId,
    pub timestamp: u64,
    pub sequence: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkScope {
    Broadcast,
    ToServer,
    Targeted(NodeId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawNetworkEvent {
    pub metadata: NetworkMetadata,
    pub scope: NetworkScope,
    pub type_name: String,
    pub payload: Vec<u8>,
}

const MAGIC: [u8; 2] = [0x49, 0x53];
const VERSION: u8 = 0x01;
const FRAME_EVENT: u8 = 0x01;
/// The event type that ends a run: sent by the test's other side once it has
/// everything it expected, so that we do not close while our own events are
/// still in flight.
const DONE_TYPE: &str = "test::Done";

fn frame(event: &RawNetworkEvent) -> Vec<u8> {
    let payload = bincode::serialize(event).expect("bincode serialize");
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&MAGIC);
    f.push(VERSION);
    f.push(FRAME_EVENT);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&payload);
    f
}

/// The payload of test event `i` from a side tagged `tag`: `i` as u32 LE,
/// then (i * 37) % 301 pattern bytes.  The C tests build the same bytes.
fn pattern(tag: u8, i: u32) -> Vec<u8> {
    let len = (i as usize * 37) % 301;
    let mut v = Vec::with_capacity(4 + len);
    v.extend_from_slice(&i.to_le_bytes());
    for k in 0..len as u32 {
        v.push(((tag as u32) * 131 + i * 7 + k * 13) as u8);
    }
    v
}

// ---- arguments -----------------------------------------------------------

struct Args {
    server: SocketAddr,
    bind: SocketAddr,
    node_id: u64,
    send: u32,
    target: Option<u64>,
    send_type: String,
    tag: u8,
    spoof_sender: Option<u64>,
    expect: u32,
    expect_sender: Option<u64>,
    expect_type: String,
    expect_tag: u8,
    wait_done: bool,
    hold_ms: u64,
    timeout_ms: u64,
    // Test hooks for the relay's hostile-input tests; QuicClientBackend
    // never does any of these.
    handshake_hex: Option<Vec<u8>>,
    raw_uni: Vec<Vec<u8>>,
    raw_bidi: Vec<Vec<u8>>,
    raw_datagram: Vec<Vec<u8>>,
    raw_uni_reset: Vec<Vec<u8>>,
    handshake_reset: bool,
}

const USAGE: &str = "usage: issun-legacy-client --server HOST:PORT [--bind ADDR:PORT] [--node-id N]
  [--send N] [--target NODE] [--send-type T] [--tag BYTE] [--spoof-sender NODE]
  [--expect N] [--expect-sender NODE] [--expect-type T] [--expect-tag BYTE]
  [--wait-done] [--hold-ms MS] [--timeout-ms MS]
test hooks (hex bytes): [--handshake-hex H] [--raw-uni H]... [--raw-bidi H]... [--raw-datagram H]...
  [--raw-uni-reset H]... (write H on a new stream, then reset it)
  [--handshake-reset] (write 4 bytes of the handshake, reset that stream, send the raw streams)";

fn parse_hex(flag: &str, v: &str) -> Result<Vec<u8>, String> {
    if v.len() % 2 != 0 {
        return Err(format!("{}: odd number of hex digits", flag));
    }
    (0..v.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v[i..i + 2], 16).map_err(|_| format!("{}: bad hex '{}'", flag, v)))
        .collect()
}

fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    u64::from_le_bytes(b)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.1:5000".parse().unwrap(),
        bind: "[::]:0".parse().unwrap(),
        node_id: random_u64(),
        send: 0,
        target: None,
        send_type: "legacy::Ping".to_string(),
        tag: b'R',
        spoof_sender: None,
        expect: 0,
        expect_sender: None,
        expect_type: "issun::Pong".to_string(),
        expect_tag: b'C',
        wait_done: false,
        hold_ms: 0,
        timeout_ms: 60_000,
        handshake_hex: None,
        raw_uni: Vec::new(),
        raw_bidi: Vec::new(),
        raw_datagram: Vec::new(),
        raw_uni_reset: Vec::new(),
        handshake_reset: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        if flag == "--wait-done" || flag == "--handshake-reset" {
            if flag == "--wait-done" {
                a.wait_done = true;
            } else {
                a.handshake_reset = true;
            }
            i += 1;
            continue;
        }
        let val = argv.get(i + 1).ok_or_else(|| format!("{} needs a value", flag))?;
        let num = || val.parse::<u64>().map_err(|_| format!("{}: '{}' is not a number", flag, val));
        match flag {
            "--server" => a.server = val.parse().map_err(|_| format!("--server: bad address '{}'", val))?,
            "--bind" => a.bind = val.parse().map_err(|_| format!("--bind: bad address '{}'", val))?,
            "--node-id" => a.node_id = num()?,
            "--send" => a.send = num()? as u32,
            "--target" => a.target = Some(num()?),
            "--send-type" => a.send_type = val.clone(),
            "--tag" => a.tag = num()? as u8,
            "--spoof-sender" => a.spoof_sender = Some(num()?),
            "--expect" => a.expect = num()? as u32,
            "--expect-sender" => a.expect_sender = Some(num()?),
            "--expect-type" => a.expect_type = val.clone(),
            "--expect-tag" => a.expect_tag = num()? as u8,
            "--hold-ms" => a.hold_ms = num()?,
            "--timeout-ms" => a.timeout_ms = num()?,
            "--handshake-hex" => a.handshake_hex = Some(parse_hex(flag, val)?),
            "--raw-uni" => a.raw_uni.push(parse_hex(flag, val)?),
            "--raw-bidi" => a.raw_bidi.push(parse_hex(flag, val)?),
            "--raw-datagram" => a.raw_datagram.push(parse_hex(flag, val)?),
            "--raw-uni-reset" => a.raw_uni_reset.push(parse_hex(flag, val)?),
            _ => return Err(format!("unknown argument '{}'", flag)),
        }
        i += 2;
    }
    Ok(a)
}

// ---- TLS: QuicClientBackend's development mode ---------------------------

struct SkipServerVerification;

impl rustls::client::ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::Certificate,
        _intermediates: &[rustls::Certificate],
        _server_name: &rustls::ServerName,
        _scts: &mut dyn Iterator<Item = &[u8]>,
        _ocsp_response: &[u8],
        _now: std::time::SystemTime,
    ) -> Result<rustls::client::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::ServerCertVerified::assertion())
    }
}

// ---- outcome -------------------------------------------------------------

enum Outcome {
    Ok,
    Fail(String),
    ConnectFailed(String),
    Closed(String),
    Timeout(String),
}

fn describe_close(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            format!("app_code={} reason={:?}", c.error_code.into_inner(), String::from_utf8_lossy(&c.reason))
        }
        quinn::ConnectionError::ConnectionClosed(c) => {
            format!("transport_code={} reason={:?}", u64::from(c.error_code), String::from_utf8_lossy(&c.reason))
        }
        other => format!("error={:?}", other.to_string()),
    }
}

// ---- the client ----------------------------------------------------------

async fn handshake(conn: &quinn::Connection, hello: &[u8]) -> Result<u64, quinn::ConnectionError> {
    let mut s = conn.open_uni().await?;
    if let Err(e) = s.write_all(hello).await {
        return Err(write_to_conn_err(e, conn));
    }
    // Dropping the stream finishes it (FIN) without waiting for the ACK, as
    // QuicClientBackend's finish() does.
    drop(s);
    let mut r = conn.accept_uni().await?;
    let mut buf = [0u8; 8];
    if r.read_exact(&mut buf).await.is_err() {
        return Err(conn.close_reason().unwrap_or(quinn::ConnectionError::LocallyClosed));
    }
    Ok(u64::from_le_bytes(buf))
}

fn write_to_conn_err(e: quinn::WriteError, conn: &quinn::Connection) -> quinn::ConnectionError {
    match e {
        quinn::WriteError::ConnectionLost(c) => c,
        _ => conn.close_reason().unwrap_or(quinn::ConnectionError::LocallyClosed),
    }
}

/// QuicClientBackend::send_event, one event per stream.
async fn send_events(conn: quinn::Connection, a: Arc<Args>) -> Result<u32, String> {
    for i in 0..a.send {
        let ev = RawNetworkEvent {
            metadata: NetworkMetadata {
                sender: NodeId(a.spoof_sender.unwrap_or(a.node_id)),
                timestamp: 1_700_000_000_000 + i as u64,
                sequence: i as u64,
            },
            scope: match a.target {
                Some(t) => NetworkScope::Targeted(NodeId(t)),
                None => NetworkScope::Broadcast,
            },
            type_name: a.send_type.clone(),
            payload: pattern(a.tag, i),
        };
        let mut s = conn.open_uni().await.map_err(|e| format!("open_uni #{}: {}", i, describe_close(&e)))?;
        s.write_all(&frame(&ev)).await.map_err(|e| format!("write #{}: {}", i, e))?;
        drop(s); // FIN
    }
    Ok(a.send)
}

/// The test hooks: raw bytes on streams and in datagrams.
async fn send_raw(conn: &quinn::Connection, a: &Args) -> Result<(), String> {
    for b in &a.raw_uni {
        let mut s = conn.open_uni().await.map_err(|e| describe_close(&e))?;
        s.write_all(b).await.map_err(|e| format!("raw write: {}", e))?;
        drop(s);
        println!("RAW uni {} bytes", b.len());
    }
    for b in &a.raw_uni_reset {
        let mut s = conn.open_uni().await.map_err(|e| describe_close(&e))?;
        if !b.is_empty() {
            s.write_all(b).await.map_err(|e| format!("raw write: {}", e))?;
        }
        let _ = s.reset(0u32.into());
        println!("RAW uni {} bytes, then reset", b.len());
    }
    for b in &a.raw_bidi {
        let (mut s, _r) = conn.open_bi().await.map_err(|e| describe_close(&e))?;
        s.write_all(b).await.map_err(|e| format!("raw write: {}", e))?;
        drop(s);
        println!("RAW bidi {} bytes", b.len());
    }
    for b in &a.raw_datagram {
        conn.send_datagram(bytes::Bytes::from(b.clone())).map_err(|e| format!("datagram: {}", e))?;
        println!("RAW datagram {} bytes", b.len());
    }
    Ok(())
}

/// Test hook: a handshake stream that the client abandons (RESET_STREAM)
/// after 4 bytes, followed at once by the raw streams; then waits for the
/// server to close the connection.
async fn reset_handshake(conn: &quinn::Connection, a: &Args) -> Outcome {
    let mut s = match conn.open_uni().await {
        Ok(s) => s,
        Err(e) => return Outcome::Closed(describe_close(&e)),
    };
    if s.write_all(&a.node_id.to_le_bytes()[..4]).await.is_err() {
        return close_outcome(conn, "handshake write".to_string());
    }
    let _ = s.reset(0u32.into());
    println!("HANDSHAKE reset after 4 bytes");
    if let Err(e) = send_raw(conn, a).await {
        return close_outcome(conn, e);
    }
    tokio::select! {
        e = conn.closed() => Outcome::Closed(describe_close(&e)),
        _ = tokio::time::sleep(Duration::from_millis(a.hold_ms.max(1))) => {
            Outcome::Fail("still connected after a reset handshake".to_string())
        }
    }
}

struct RecvReport {
    expected_ok: u32,
    other: u64,
    done: bool,
}

/// QuicClientBackend::receive_event in a loop, plus checks.
async fn receive_events(conn: quinn::Connection, a: Arc<Args>) -> Result<RecvReport, String> {
    let mut rep = RecvReport { expected_ok: 0, other: 0, done: false };
    let mut last_seq: Option<u64> = None;
    loop {
        if rep.expected_ok >= a.expect && (rep.done || !a.wait_done) {
            return Ok(rep);
        }
        let mut stream = match tokio::time::timeout(Duration::from_millis(10), conn.accept_uni()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("accept_uni: {}", describe_close(&e))),
            Err(_) => continue,
        };
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).await.map_err(|e| format!("read header: {}", e))?;
        if header[0..2] != MAGIC {
            return Err(format!("bad magic {:02x}{:02x}", header[0], header[1]));
        }
        // QuicClientBackend does not look at these two bytes; a frame that is
        // not an EVENT would make its bincode decoding fail, so say it here.
        if header[2] != VERSION || header[3] != FRAME_EVENT {
            return Err(format!("frame version {} type {:#04x} on an event stream", header[2], header[3]));
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.map_err(|e| format!("read payload: {}", e))?;
        drop(stream);
        let ev: RawNetworkEvent =
            bincode::deserialize(&payload).map_err(|e| format!("bincode: {}", e))?;
        if ev.type_name == DONE_TYPE {
            rep.done = true;
            continue;
        }
        let from_expected = a.expect_sender.map_or(true, |s| s == ev.metadata.sender.0);
        if !from_expected || ev.type_name != a.expect_type {
            rep.other += 1;
            continue;
        }
        let i = rep.expected_ok;
        let want = pattern(a.expect_tag, i);
        if ev.payload != want {
            return Err(format!(
                "event #{}: payload differs (got {} bytes, want {})",
                i,
                ev.payload.len(),
                want.len()
            ));
        }
        if let Some(prev) = last_seq {
            if ev.metadata.sequence <= prev {
                return Err(format!("event #{}: sequence {} after {}", i, ev.metadata.sequence, prev));
            }
        }
        last_seq = Some(ev.metadata.sequence);
        if ev.scope != NetworkScope::Targeted(NodeId(a.node_id)) && ev.scope != NetworkScope::Broadcast {
            return Err(format!("event #{}: unexpected scope {:?}", i, ev.scope));
        }
        rep.expected_ok += 1;
    }
}

async fn run(a: Arc<Args>) -> Outcome {
    let mut crypto = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_custom_certificate_verifier(Arc::new(SkipServerVerification))
        .with_no_client_auth();
    crypto.alpn_protocols.clear(); // no ALPN, like QuicClientBackend
    let mut endpoint = match quinn::Endpoint::client(a.bind) {
        Ok(e) => e,
        Err(e) => return Outcome::ConnectFailed(format!("endpoint: {}", e)),
    };
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = match endpoint.connect(a.server, "localhost") {
        Ok(c) => c,
        Err(e) => return Outcome::ConnectFailed(format!("connect: {}", e)),
    };
    let conn = match connecting.await {
        Ok(c) => c,
        Err(e) => return Outcome::ConnectFailed(describe_close(&e)),
    };
    if a.handshake_reset {
        return reset_handshake(&conn, &a).await;
    }
    let hello = a.handshake_hex.clone().unwrap_or_else(|| a.node_id.to_le_bytes().to_vec());
    let echo = match handshake(&conn, &hello).await {
        Ok(v) => v,
        Err(e) => return Outcome::Closed(describe_close(&e)),
    };
    println!("HANDSHAKE node_id={} echo={}", a.node_id, echo);
    if a.handshake_hex.is_none() && echo != a.node_id {
        return Outcome::Fail(format!("echo {} is not our NodeId {}", echo, a.node_id));
    }
    if let Err(e) = send_raw(&conn, &a).await {
        return close_outcome(&conn, e);
    }
    let started = Instant::now();
    let sender = tokio::spawn(send_events(conn.clone(), a.clone()));
    let receiver = tokio::spawn(receive_events(conn.clone(), a.clone()));
    let sent = match sender.await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return close_outcome(&conn, e),
        Err(e) => return Outcome::Fail(format!("send task: {}", e)),
    };
    println!("SENT {} in {} ms", sent, started.elapsed().as_millis());
    let rep = match receiver.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return close_outcome(&conn, e),
        Err(e) => return Outcome::Fail(format!("receive task: {}", e)),
    };
    println!(
        "RECEIVED {} expected ({} other) done={} in {} ms",
        rep.expected_ok,
        rep.other,
        rep.done,
        started.elapsed().as_millis()
    );
    if a.hold_ms > 0 {
        tokio::select! {
            e = conn.closed() => return Outcome::Closed(describe_close(&e)),
            _ = tokio::time::sleep(Duration::from_millis(a.hold_ms)) => {}
        }
        println!("HELD {} ms, still connected", a.hold_ms);
    }
    // QuicClientBackend::disconnect
    conn.close(0u32.into(), b"disconnect");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    Outcome::Ok
}

/// A task failed: when the connection was closed by the server, say so with
/// its code rather than with the stream error that revealed it.
fn close_outcome(conn: &quinn::Connection, e: String) -> Outcome {
    match conn.close_reason() {
        Some(c) => Outcome::Closed(describe_close(&c)),
        None => Outcome::Fail(e),
    }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("{}\n{}", e, USAGE);
            std::process::exit(4);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let limit = Duration::from_millis(a.timeout_ms);
    let outcome = rt.block_on(async {
        match tokio::time::timeout(limit, run(a.clone())).await {
            Ok(o) => o,
            Err(_) => Outcome::Timeout(format!("no result within {} ms", a.timeout_ms)),
        }
    });
    let code = match outcome {
        Outcome::Ok => {
            println!("OK");
            0
        }
        Outcome::Fail(e) => {
            println!("FAIL {}", e);
            1
        }
        Outcome::ConnectFailed(e) => {
            println!("CONNECT_FAILED {}", e);
            2
        }
        Outcome::Closed(e) => {
            println!("CLOSED {}", e);
            3
        }
        Outcome::Timeout(e) => {
            println!("TIMEOUT {}", e);
            5
        }
    };
    std::process::exit(code);
}
