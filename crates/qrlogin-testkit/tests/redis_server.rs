//! The private redis-server helper: starts, answers, dies, comes back.

use qrlogin_testkit::RedisServer;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn ping_unix(server: &RedisServer) -> bool {
    let Ok(mut s) = UnixStream::connect(server.socket_path()) else {
        return false;
    };
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

#[test]
fn unix_server_starts_dies_and_restarts() {
    let mut server = RedisServer::start();
    assert!(server.url().starts_with("redis+unix:///"));
    assert!(server.url().ends_with("/redis.sock"));
    assert_eq!(server.port(), None);
    assert!(server.is_running());
    assert!(ping_unix(&server));

    server.kill();
    assert!(!server.is_running());
    assert!(!ping_unix(&server));

    server.restart();
    assert!(server.is_running());
    assert!(ping_unix(&server));

    let dir = server.dir().to_path_buf();
    drop(server);
    assert!(!dir.exists(), "temp dir removed on drop");
}

#[test]
fn tcp_server_listens_on_its_port() {
    let mut server = RedisServer::start_tcp();
    let port = server.port().expect("tcp variant has a port");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").expect("write");
    s.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"+PONG\r\n");
    drop(s);
    server.restart();
    assert_eq!(server.port(), Some(port));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[test]
fn servers_are_private() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.url(), b.url());
}
