//! A terminal client for the chatroom demo. It handles its own commands (`/help`, `/register`,
//! `/login`, `/join`, `/quit`), sends what you type as chat once you are logged in, says in
//! plain words what the server answered, and why it was disconnected if it was.
//!
//! `target/release/chatroom-client --config conf/oxworld.ini [--transport tcp|ws|kcp]`: the gate's
//! address for that transport, its public key and its compression setting come from the config
//! (`--gate ADDR` overrides the address).

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use std::path::PathBuf;

use oxworld_client::{BlockingClient, ClientError, Dial, Transport};
use oxworld_net::client_proto::{ErrorCode, ServerMsg};
use oxworld_net::config::Config;
use oxworld_net::{Id, Value};

/// Chat with an oxworld chatroom cluster.
#[derive(Debug, Parser)]
struct Cli {
    /// Cluster config: the gate's addresses, key file and compression.
    #[arg(long, default_value = "conf/oxworld.ini")]
    config: PathBuf,
    /// Which gate of the config (1-based).
    #[arg(long, default_value_t = 1)]
    gate_id: u16,
    /// Transport: tcp, ws or kcp.
    #[arg(long, default_value = "tcp")]
    transport: Transport,
    /// Gate address for that transport, instead of the config's.
    #[arg(long)]
    gate: Option<SocketAddr>,
}

fn dial(cli: &Cli) -> Result<Dial, String> {
    let cfg = Config::load(&cli.config).map_err(|e| e.to_string())?;
    let gc = cfg.gate(cli.gate_id).ok_or_else(|| format!("no gate{} in {}", cli.gate_id, cli.config.display()))?;
    let mut d = Dial::for_gate(gc, cli.transport)?;
    if let Some(a) = cli.gate {
        d.addr = a;
    }
    Ok(d)
}

const HELP: &str = "\
commands:
  /register <user> <password>   make an account (then /login)
  /login <user> <password>      log in; from then on, what you type goes to your chat room
  /join <room>                  move to another chat room (letters, digits, _ and -)
  /rooms                        the chat rooms and how many are in each
  /help                         this list
  /quit                         leave
anything else you type (once logged in) is a line of chat for everyone in your room";

const LOG_IN_FIRST: &str = "log in first: /login <user> <password> (or /register <user> <password>)";

/// Where the client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connected; the server has not created our account entity yet.
    Connecting,
    /// Talking to the account entity: register or log in.
    Account(Id),
    /// Logged in: the avatar owns the connection.
    Chatting(Id),
}

fn text(v: &[Value], i: usize) -> &str {
    v.get(i).and_then(Value::as_str).unwrap_or("")
}

/// `on_rooms([[room, members], ...])` as `blue (2), red (1)`.
fn rooms_line(args: &[Value]) -> String {
    let Some(Value::List(rooms)) = args.first() else { return "none".to_owned() };
    let parts: Vec<String> = rooms
        .iter()
        .filter_map(|r| match r {
            Value::List(p) => Some(format!("{} ({})", text(p, 0), p.get(1).and_then(Value::as_int).unwrap_or(0))),
            _ => None,
        })
        .collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// A server error in words a user understands (the server's message names methods and types).
fn plain(code: u16, message: &str) -> String {
    match ErrorCode::from_u16(code) {
        Some(ErrorCode::UnknownMethod | ErrorCode::NotExposed | ErrorCode::NotAddressable) => {
            "the server cannot do that now".to_owned()
        }
        Some(ErrorCode::Unavailable) => format!("the server is not available: {message}"),
        Some(ErrorCode::UnknownEntity) => "your session on the server is gone; reconnect".to_owned(),
        // Bad arguments or a failed call: the reason is after the method's name.
        _ => message.rsplit(": ").next().unwrap_or(message).to_owned(),
    }
}

/// What a typed line asks for.
enum Action {
    Send(&'static str, Vec<Value>),
    Say(String),
    Quit,
    Nothing,
}

fn action(stage: Stage, line: &str) -> Action {
    let words: Vec<&str> = line.split_whitespace().collect();
    let logged_in = matches!(stage, Stage::Chatting(_));
    match words.as_slice() {
        [] => Action::Nothing,
        ["/quit"] => Action::Quit,
        ["/help"] => Action::Say(HELP.to_owned()),
        ["/register" | "/login", ..] if logged_in => Action::Say("you are already logged in".into()),
        ["/register", user, pwd] => Action::Send("register", vec![Value::from(*user), Value::from(*pwd)]),
        ["/login", user, pwd] => Action::Send("login", vec![Value::from(*user), Value::from(*pwd)]),
        ["/register" | "/login", ..] => Action::Say(format!("usage: {} <user> <password>", words[0])),
        ["/join", room] if logged_in => Action::Send("join_room", vec![Value::from(*room)]),
        ["/join", ..] if logged_in => Action::Say("usage: /join <room>".into()),
        ["/rooms"] if logged_in => Action::Send("rooms", Vec::new()),
        [cmd, ..] if cmd.starts_with('/') && !matches!(*cmd, "/join" | "/rooms") => {
            Action::Say(format!("unknown command {cmd} (/help lists the commands)"))
        }
        _ if logged_in => Action::Send("send_chat", vec![Value::from(line)]),
        _ => Action::Say(LOG_IN_FIRST.to_owned()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dial = match dial(&cli) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("chatroom-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut c = match BlockingClient::connect(&dial, Duration::from_secs(3)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot connect to {}: {e}", dial.addr);
            return ExitCode::FAILURE;
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
    println!(
        "connected to {} over {}{}; /help lists the commands",
        dial.addr,
        dial.transport,
        if dial.encrypted() { ", encrypted" } else { "" }
    );
    let mut stage = Stage::Connecting;
    loop {
        match c.next(Duration::from_millis(50)) {
            Ok(ServerMsg::CreateEntity { is_player: true, id, type_name, .. }) => {
                if type_name == "Avatar" {
                    stage = Stage::Chatting(id);
                } else {
                    stage = Stage::Account(id);
                    println!("* /register <user> <password> to make an account, /login <user> <password> to log in");
                }
            }
            Ok(ServerMsg::Call { method, args, .. }) => match method.as_str() {
                "on_recv_chat" => println!("<{}> {}", text(&args, 0), text(&args, 1)),
                "show_info" => println!("* {}", text(&args, 0)),
                "show_error" => println!("! {}", text(&args, 0)),
                "on_arrive" => println!("* {} joined chat room {}", text(&args, 0), text(&args, 1)),
                "on_leave" => println!("* {} left chat room {}", text(&args, 0), text(&args, 1)),
                "on_rooms" => println!("* rooms: {}", rooms_line(&args)),
                _ => {}
            },
            Ok(ServerMsg::Error { code, message, .. }) => println!("! {}", plain(code, &message)),
            Ok(_) | Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                eprintln!("disconnected: {e}");
                return ExitCode::FAILURE;
            }
        }
        loop {
            let line = match rx.try_recv() {
                Ok(l) => l,
                Err(mpsc::TryRecvError::Empty) => break,
                // End of input (^D): as /quit.
                Err(mpsc::TryRecvError::Disconnected) => return ExitCode::SUCCESS,
            };
            let (Stage::Account(target) | Stage::Chatting(target)) = stage else {
                println!("! still connecting; try again in a moment");
                continue;
            };
            let sent = match action(stage, line.trim()) {
                Action::Send(method, args) => c.call(target, method, args),
                Action::Say(s) => {
                    println!("{s}");
                    Ok(())
                }
                Action::Quit => return ExitCode::SUCCESS,
                Action::Nothing => Ok(()),
            };
            if let Err(e) = sent {
                eprintln!("disconnected: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
