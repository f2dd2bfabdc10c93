//! The terminal chat client as a user meets it: a real chatroom cluster (testkit) and the
//! `chatroom-client` binary driven through its stdin and stdout. It explains itself, refuses
//! what is not possible in plain words (no internal method ids), handles its own commands,
//! chats, and quits cleanly.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxworld_bin::testkit::TestCluster;

/// A running client: its stdin, and its stdout lines as they come.
struct Terminal {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Terminal {
    fn start(config: &std::path::Path) -> Terminal {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatroom-client"))
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Terminal { child, stdin, lines, seen: Vec::new() }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("type");
    }

    /// Waits (up to 20 s) for an output line containing `want`; returns it.
    fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(want) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {want:?}; the client printed {:?}", self.seen),
            }
        }
    }
}

#[test]
fn the_chat_client_explains_refuses_plainly_and_chats() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_chatroom"));
    let cluster = TestCluster::start("chat-client", &exe, 1, 1, "").expect("cluster");
    let mut t = Terminal::start(&cluster.layout.config);
    t.expect("/help lists the commands");
    t.expect("/register <user> <password> to make an account");
    t.type_line("/help");
    t.expect("/join <room>");
    t.type_line("hello?");
    t.expect("log in first: /login <user> <password>");
    t.type_line("/join blue");
    t.expect("log in first");
    t.type_line("/frobnicate");
    t.expect("unknown command /frobnicate (/help lists the commands)");
    t.type_line("/login");
    t.expect("usage: /login <user> <password>");
    t.type_line("/register ann s3cret");
    t.expect("* registered; now log in");
    t.type_line("/login ann s3cret");
    let hello = t.expect("* welcome ann");
    assert!(hello.contains("chat room 1") && hello.contains("/join <room>"), "the room is explained: {hello}");
    t.type_line("/login ann s3cret");
    t.expect("you are already logged in");
    t.type_line("/nope");
    t.expect("unknown command /nope");
    t.type_line("/join blue");
    t.expect("* you are in chat room blue");
    t.expect("* ann joined chat room blue");
    t.type_line("/rooms");
    t.expect("* rooms: blue (1)");
    t.type_line("hi all");
    t.expect("<ann> hi all");
    // A second user arrives in the room, talks, leaves: ann sees all of it.
    let mut bob = Terminal::start(&cluster.layout.config);
    bob.expect("/register <user> <password> to make an account");
    bob.type_line("/register bob pw2");
    bob.expect("* registered; now log in");
    bob.type_line("/login bob pw2");
    bob.expect("* welcome bob");
    bob.type_line("/join blue");
    t.expect("* bob joined chat room blue");
    bob.type_line("/rooms");
    bob.expect("* rooms: blue (2)");
    bob.type_line("hello ann");
    t.expect("<bob> hello ann");
    bob.type_line("/quit");
    assert!(bob.child.wait().expect("bob exits").success());
    t.expect("* bob left chat room blue");
    t.type_line("/quit");
    let status = t.child.wait().expect("client exits");
    assert!(status.success(), "{status}");
    assert!(
        !t.seen.iter().any(|l| l.contains("no method with id") || l.contains("0x")),
        "no internal errors reach the user: {:?}",
        t.seen
    );
    cluster.stop().expect("clean stop");
}
