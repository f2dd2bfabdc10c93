//! A terminal client for the chatroom demo: type `/register <user> <password>`,
//! `/login <user> <password>`, `/join <room>`, `/quit`, or a line of chat.
//!
//! `cargo run -p oxworld-demo-chatroom --bin chatroom-client -- --gate 127.0.0.1:14000`

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use oxworld_client::{BlockingClient, ClientError};
use oxworld_net::client_proto::ServerMsg;
use oxworld_net::{Id, Value};

/// Chat with an oxworld chatroom cluster.
#[derive(Debug, Parser)]
struct Cli {
    /// Gate address.
    #[arg(long, default_value = "127.0.0.1:14000")]
    gate: SocketAddr,
}

fn text(v: &[Value], i: usize) -> &str {
    v.get(i).and_then(Value::as_str).unwrap_or("")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut c = match BlockingClient::connect(cli.gate, Duration::from_secs(3)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot connect to {}: {e}", cli.gate);
            return std::process::ExitCode::FAILURE;
        }
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    println!("connected; /register <user> <password>, /login <user> <password>, /join <room>, /quit");
    let mut player: Option<Id> = None;
    loop {
        match c.next(Duration::from_millis(50)) {
            Ok(ServerMsg::CreateEntity { is_player: true, id, type_name, .. }) => {
                player = Some(id);
                if type_name == "Avatar" {
                    println!("* logged in");
                }
            }
            Ok(ServerMsg::Call { method, args, .. }) => match method.as_str() {
                "on_recv_chat" => println!("<{}> {}", text(&args, 0), text(&args, 1)),
                "show_info" => println!("* {}", text(&args, 0)),
                "show_error" => println!("! {}", text(&args, 0)),
                other => println!("? {other} {args:?}"),
            },
            Ok(ServerMsg::Error { message, .. }) => println!("! {message}"),
            Ok(_) | Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                eprintln!("disconnected: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        for line in rx.try_iter() {
            let line = line.trim().to_owned();
            let Some(p) = player else {
                println!("! not connected yet");
                continue;
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let sent = match words.as_slice() {
                ["/quit"] => return std::process::ExitCode::SUCCESS,
                ["/register", user, pwd] => c.call(p, "register", vec![Value::from(*user), Value::from(*pwd)]),
                ["/login", user, pwd] => c.call(p, "login", vec![Value::from(*user), Value::from(*pwd)]),
                [] => continue,
                _ => c.call(p, "send_chat", vec![Value::from(line.as_str())]),
            };
            if let Err(e) = sent {
                eprintln!("send failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
}
