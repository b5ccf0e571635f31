//! A small SMTP server for the delivery tests, on tokio and loopback: enough RFC 5321 for
//! lettre (invite-svc's client) — EHLO/HELO, AUTH PLAIN and LOGIN, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT — keeping every accepted message (envelope and raw data)
//! for assertions. Written here rather than taken from a crate because the tests need to
//! script its answers (a 550 recipient, 4xx at DATA, slow replies, a port that refuses
//! connections until the test opens it), which the embeddable servers do not offer on tokio.
//!
//! It is a test double, not a mail server: no STARTTLS (lettre is run with `--smtp-tls none`
//! against it), no relaying, one size limit and one line limit, both generous.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Notify,
    task::{JoinHandle, JoinSet},
};

/// The longest command or text line taken (RFC 5321 allows 512 and 1000 octets; lettre
/// stays well under). A longer one is answered 500 and the connection closed.
pub const MAX_LINE: usize = 4096;
/// The largest message taken (advertised as SIZE); a larger one is answered 552.
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// An SMTP reply the tests script: code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The reverse-path of MAIL FROM, without the angle brackets (empty for `<>`).
    pub mail_from: String,
    /// The accepted forward-paths of RCPT TO, in order.
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-unstuffed, CRLF line ends, without the final `.` line.
    pub data: Vec<u8>,
    /// The user name of a successful AUTH on this connection.
    pub authenticated_as: Option<String>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The message parsed (headers decoded: RFC 2047 names, folded lines).
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a message mail-parser can read")
    }
}

/// What the server answers besides the usual, changed while it runs.
#[derive(Debug, Default)]
struct Script {
    /// Recipients (compared case-insensitively) answered with this reply instead of 250.
    rejected: HashMap<String, Reply>,
    /// Replies to the next DATA terminations, one each, before messages are taken again.
    data_failures: VecDeque<Reply>,
    /// Wait before every reply (the greeting included).
    delay: Duration,
    /// When set, MAIL is refused (530) until AUTH succeeds with these.
    credentials: Option<(String, String)>,
}

#[derive(Debug, Default)]
struct Shared {
    script: Mutex<Script>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

impl Shared {
    fn script<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        f(&mut self.script.lock().expect("script lock"))
    }
}

/// A port bound on 127.0.0.1 that refuses connections until [`Reserved::listen`]: "the
/// SMTP server is down" without the race of freeing a port and binding it again later.
pub struct Reserved {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl Reserved {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Starts answering on the reserved port.
    pub fn listen(self) -> SmtpServer {
        let listener = self.socket.listen(64).expect("listen on the reserved port");
        SmtpServer::serve(listener, self.addr)
    }
}

/// The running server; stops (dropping its connections) when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl SmtpServer {
    /// A server on a free loopback port.
    pub async fn start() -> SmtpServer {
        SmtpServer::reserve().listen()
    }

    /// A free loopback port, not yet answering.
    pub fn reserve() -> Reserved {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind("127.0.0.1:0".parse().expect("literal address"))
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("bound address");
        Reserved { socket, addr }
    }

    fn serve(listener: TcpListener, addr: SocketAddr) -> SmtpServer {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let accept = tokio::spawn(async move {
            // Connections live in the set, so dropping the server (aborting this task)
            // closes them too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(Session::new(state.clone()).run(stream));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        SmtpServer { addr, shared, accept }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// RCPT TO this address is answered with `reply` (e.g. 550 for a bounce).
    pub fn reject_recipient(&self, address: &str, reply: Reply) {
        self.shared
            .script(|s| s.rejected.insert(address.to_ascii_lowercase(), reply));
    }

    /// The next DATA is answered with `reply` (e.g. 451) and its message dropped; queued
    /// calls fail that many DATA in turn.
    pub fn fail_next_data(&self, reply: Reply) {
        self.shared.script(|s| s.data_failures.push_back(reply));
    }

    /// Every reply waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.script(|s| s.delay = delay);
    }

    /// MAIL needs a successful AUTH (PLAIN or LOGIN) with these.
    pub fn require_auth(&self, username: &str, password: &str) {
        self.shared
            .script(|s| s.credentials = Some((username.to_string(), password.to_string())));
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received lock").clone()
    }

    /// The messages once there are at least `count`, or `None` after `limit`.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Option<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            let messages = self.messages();
            if messages.len() >= count {
                return Some(messages);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One envelope being built.
#[derive(Debug, Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

/// One connection's state.
struct Session {
    shared: Arc<Shared>,
    greeted: bool,
    authenticated_as: Option<String>,
    transaction: Transaction,
}

/// What a command leads to.
enum Next {
    Reply(u16, String),
    /// EHLO's multi-line 250.
    Lines(Vec<String>),
    Data,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    Quit,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            greeted: false,
            authenticated_as: None,
            transaction: Transaction::default(),
        }
    }

    async fn run(mut self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        // An I/O error only ends this connection: the client sees a dropped connection,
        // which is what a test of a flaky server wants anyway.
        let ended: std::io::Result<()> = async {
            self.reply(&mut write, 220, "referral-tests ESMTP ready").await?;
            loop {
                let Some(line) = read_line(&mut read).await? else {
                    return Ok(());
                };
                let Ok(line) = line else {
                    return self.reply(&mut write, 500, "5.5.2 line too long").await;
                };
                match self.command(&line) {
                    Next::Reply(code, text) => self.reply(&mut write, code, &text).await?,
                    Next::Lines(lines) => self.reply_lines(&mut write, 250, &lines).await?,
                    Next::Data => self.data(&mut read, &mut write).await?,
                    Next::Auth { mechanism, initial } => {
                        self.auth(&mut read, &mut write, &mechanism, initial).await?
                    }
                    Next::Quit => return self.reply(&mut write, 221, "2.0.0 bye").await,
                }
            }
        }
        .await;
        drop(ended);
    }

    fn command(&mut self, line: &str) -> Next {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let arg = arg.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if arg.is_empty() => Next::Reply(501, "5.5.4 a domain is needed".into()),
            "EHLO" => {
                self.greeted = true;
                self.transaction = Transaction::default();
                let mut lines = vec![
                    "referral-tests".to_string(),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    format!("SIZE {MAX_MESSAGE}"),
                ];
                if self.shared.script(|s| s.credentials.is_some()) {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                Next::Lines(lines)
            }
            "HELO" => {
                self.greeted = true;
                self.transaction = Transaction::default();
                Next::Reply(250, "referral-tests".into())
            }
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" if self.transaction.rcpt_to.is_empty() => Next::Reply(503, "5.5.1 RCPT first".into()),
            "DATA" => Next::Data,
            "RSET" => {
                self.transaction = Transaction::default();
                Next::Reply(250, "2.0.0 reset".into())
            }
            "NOOP" => Next::Reply(250, "2.0.0 ok".into()),
            "QUIT" => Next::Quit,
            "AUTH" if !self.greeted => Next::Reply(503, "5.5.1 EHLO first".into()),
            "AUTH" if self.authenticated_as.is_some() => {
                Next::Reply(503, "5.5.1 already authenticated".into())
            }
            "AUTH" => {
                let (mechanism, initial) = arg.split_once(' ').unwrap_or((arg, ""));
                Next::Auth {
                    mechanism: mechanism.to_ascii_uppercase(),
                    initial: (!initial.is_empty()).then(|| initial.to_string()),
                }
            }
            "STARTTLS" => Next::Reply(454, "4.7.0 TLS not available".into()),
            "VRFY" => Next::Reply(252, "2.1.5 cannot verify".into()),
            _ => Next::Reply(502, "5.5.2 command not implemented".into()),
        }
    }

    fn mail(&mut self, arg: &str) -> Next {
        if !self.greeted {
            return Next::Reply(503, "5.5.1 EHLO first".into());
        }
        if self.transaction.mail_from.is_some() {
            return Next::Reply(503, "5.5.1 nested MAIL".into());
        }
        if self.authenticated_as.is_none() && self.shared.script(|s| s.credentials.is_some()) {
            return Next::Reply(530, "5.7.0 authentication required".into());
        }
        match path(arg, "FROM:") {
            Some(from) => {
                self.transaction.mail_from = Some(from);
                Next::Reply(250, "2.1.0 ok".into())
            }
            None => Next::Reply(501, "5.5.4 syntax: MAIL FROM:<address>".into()),
        }
    }

    fn rcpt(&mut self, arg: &str) -> Next {
        if self.transaction.mail_from.is_none() {
            return Next::Reply(503, "5.5.1 MAIL first".into());
        }
        let Some(to) = path(arg, "TO:").filter(|to| !to.is_empty()) else {
            return Next::Reply(501, "5.5.4 syntax: RCPT TO:<address>".into());
        };
        let rejected = self
            .shared
            .script(|s| s.rejected.get(&to.to_ascii_lowercase()).cloned());
        if let Some(reply) = rejected {
            return Next::Reply(reply.code, reply.text);
        }
        self.transaction.rcpt_to.push(to);
        Next::Reply(250, "2.1.5 ok".into())
    }

    async fn data<R, W>(&mut self, read: &mut R, write: &mut W) -> std::io::Result<()>
    where
        R: AsyncBufReadExt + Unpin,
        W: AsyncWriteExt + Unpin,
    {
        self.reply(write, 354, "end data with <CR><LF>.<CR><LF>").await?;
        let mut data = Vec::new();
        let mut too_long = false;
        loop {
            let Some(line) = read_raw_line(read).await? else {
                return Ok(());
            };
            let Some(line) = line else {
                too_long = true;
                continue;
            };
            if line == b".\r\n" || line == b".\n" {
                break;
            }
            // Dot-unstuffing (RFC 5321 4.5.2): a leading dot was doubled by the client.
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if data.len() + line.len() > MAX_MESSAGE {
                too_long = true;
                continue;
            }
            data.extend_from_slice(line);
        }
        let transaction = std::mem::take(&mut self.transaction);
        if too_long {
            return self.reply(write, 552, "5.3.4 message too big").await;
        }
        if let Some(reply) = self.shared.script(|s| s.data_failures.pop_front()) {
            return self.reply(write, reply.code, &reply.text).await;
        }
        let number = {
            let mut received = self.shared.received.lock().expect("received lock");
            received.push(Received {
                mail_from: transaction.mail_from.unwrap_or_default(),
                rcpt_to: transaction.rcpt_to,
                data,
                authenticated_as: self.authenticated_as.clone(),
            });
            received.len()
        };
        self.shared.arrived.notify_waiters();
        self.reply(write, 250, &format!("2.0.0 ok: queued as {number}"))
            .await
    }

    async fn auth<R, W>(
        &mut self,
        read: &mut R,
        write: &mut W,
        mechanism: &str,
        initial: Option<String>,
    ) -> std::io::Result<()>
    where
        R: AsyncBufReadExt + Unpin,
        W: AsyncWriteExt + Unpin,
    {
        let Some((user, pass)) = self.shared.script(|s| s.credentials.clone()) else {
            return self.reply(write, 502, "5.5.1 AUTH not offered").await;
        };
        let given = match mechanism {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => r,
                    None => match self.challenge(read, write, "").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                // authzid NUL authcid NUL passwd (RFC 4616).
                decode(&response).and_then(|plain| {
                    let mut parts = plain.splitn(3, '\0').skip(1);
                    Some((parts.next()?.to_string(), parts.next()?.to_string()))
                })
            }
            "LOGIN" => {
                let name = match initial {
                    Some(r) => Some(r),
                    None => self.challenge(read, write, "VXNlcm5hbWU6").await?,
                };
                let Some(name) = name else { return Ok(()) };
                let Some(password) = self.challenge(read, write, "UGFzc3dvcmQ6").await? else {
                    return Ok(());
                };
                decode(&name).zip(decode(&password))
            }
            _ => return self.reply(write, 504, "5.5.4 unknown mechanism").await,
        };
        match given {
            Some((u, p)) if u == user && p == pass => {
                self.authenticated_as = Some(u);
                self.reply(write, 235, "2.7.0 authenticated").await
            }
            Some(_) => self.reply(write, 535, "5.7.8 bad credentials").await,
            None => self.reply(write, 501, "5.5.2 not base64").await,
        }
    }

    /// A 334 challenge and the client's answer (`None`: the connection ended).
    async fn challenge<R, W>(
        &self,
        read: &mut R,
        write: &mut W,
        text: &str,
    ) -> std::io::Result<Option<String>>
    where
        R: AsyncBufReadExt + Unpin,
        W: AsyncWriteExt + Unpin,
    {
        self.reply(write, 334, text).await?;
        Ok(read_line(read).await?.and_then(Result::ok))
    }

    async fn reply<W: AsyncWriteExt + Unpin>(
        &self,
        write: &mut W,
        code: u16,
        text: &str,
    ) -> std::io::Result<()> {
        self.reply_lines(write, code, &[text.to_string()]).await
    }

    async fn reply_lines<W: AsyncWriteExt + Unpin>(
        &self,
        write: &mut W,
        code: u16,
        lines: &[String],
    ) -> std::io::Result<()> {
        let delay = self.shared.script(|s| s.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{code}{sep}{line}\r\n"));
        }
        write.write_all(out.as_bytes()).await?;
        write.flush().await
    }
}

/// `<address>` after `keyword` (case-insensitive), parameters after it ignored.
fn path(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_string())
}

fn decode(b64: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()
}

/// One line with its line end, at most [`MAX_LINE`] bytes: `Ok(None)` at the end of the
/// stream, `Ok(Some(None))` for a longer line (consumed whole, so the next read starts
/// on a fresh line).
async fn read_raw_line<R: AsyncRead + AsyncBufReadExt + Unpin>(
    read: &mut R,
) -> std::io::Result<Option<Option<Vec<u8>>>> {
    let mut line = Vec::new();
    let n = (&mut *read)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.ends_with(b"\n") {
        return Ok(Some(Some(line)));
    }
    // Over the limit (or cut by the end of the stream): skip to the line end.
    loop {
        let mut rest = Vec::new();
        let n = (&mut *read)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut rest)
            .await?;
        if n == 0 || rest.ends_with(b"\n") {
            return Ok(Some(None));
        }
    }
}

/// A command line without its line end, as text (`Err(())` when over [`MAX_LINE`] or not
/// UTF-8).
async fn read_line<R: AsyncRead + AsyncBufReadExt + Unpin>(
    read: &mut R,
) -> std::io::Result<Option<Result<String, ()>>> {
    Ok(read_raw_line(read).await?.map(|line| {
        line.and_then(|l| String::from_utf8(l).ok())
            .map(|l| l.trim_end_matches(['\r', '\n']).to_string())
            .ok_or(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw client: sends lines, reads replies (multi-line ones joined).
    struct Client {
        read: BufReader<tokio::net::tcp::OwnedReadHalf>,
        write: tokio::net::tcp::OwnedWriteHalf,
    }

    impl Client {
        async fn connect(server: &SmtpServer) -> (Client, String) {
            let stream = TcpStream::connect(server.addr()).await.expect("connect");
            let (read, write) = stream.into_split();
            let mut client = Client {
                read: BufReader::new(read),
                write,
            };
            let greeting = client.reply().await;
            (client, greeting)
        }

        async fn reply(&mut self) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                self.read.read_line(&mut line).await.expect("a reply");
                all.push_str(&line);
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return all;
                }
            }
        }

        async fn send(&mut self, raw: &str) -> String {
            self.write.write_all(raw.as_bytes()).await.expect("write");
            self.reply().await
        }
    }

    async fn ready(server: &SmtpServer) -> Client {
        let (mut c, greeting) = Client::connect(server).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert!(c.send("EHLO test\r\n").await.starts_with("250-"));
        c
    }

    #[tokio::test]
    async fn takes_a_message_with_dot_unstuffing_and_the_envelope() {
        let server = SmtpServer::start().await;
        let mut c = ready(&server).await;
        assert!(
            c.send("MAIL FROM:<a@example.com> BODY=8BITMIME\r\n")
                .await
                .starts_with("250 ")
        );
        assert!(c.send("RCPT TO:<b@example.com>\r\n").await.starts_with("250 "));
        assert!(c.send("rcpt to:<C@example.com>\r\n").await.starts_with("250 "));
        assert!(c.send("DATA\r\n").await.starts_with("354 "));
        let reply = c.send("Subject: hi\r\n\r\n..leading dot\r\n.\r\n").await;
        assert!(reply.starts_with("250 "), "{reply}");
        let m = &server.messages()[0];
        assert_eq!(m.mail_from, "a@example.com");
        assert_eq!(m.rcpt_to, ["b@example.com", "C@example.com"]);
        assert_eq!(m.text(), "Subject: hi\r\n\r\n.leading dot\r\n");
        assert_eq!(m.parsed().subject(), Some("hi"));
        assert_eq!(m.authenticated_as, None);
        assert!(c.send("QUIT\r\n").await.starts_with("221 "));
    }

    #[tokio::test]
    async fn commands_out_of_order_are_refused_and_rset_clears() {
        let server = SmtpServer::start().await;
        let (mut c, _) = Client::connect(&server).await;
        assert!(
            c.send("MAIL FROM:<a@x>\r\n").await.starts_with("503 "),
            "EHLO first"
        );
        assert!(
            c.send("EHLO\r\n").await.starts_with("501 "),
            "EHLO needs a domain"
        );
        assert!(c.send("HELO x\r\n").await.starts_with("250 "));
        assert!(
            c.send("RCPT TO:<b@x>\r\n").await.starts_with("503 "),
            "MAIL first"
        );
        assert!(c.send("DATA\r\n").await.starts_with("503 "), "RCPT first");
        assert!(c.send("MAIL FROM:a@x\r\n").await.starts_with("501 "), "brackets");
        assert!(c.send("MAIL FROM:<a@x>\r\n").await.starts_with("250 "));
        assert!(c.send("MAIL FROM:<a@x>\r\n").await.starts_with("503 "), "nested");
        assert!(c.send("RSET\r\n").await.starts_with("250 "));
        assert!(c.send("RCPT TO:<b@x>\r\n").await.starts_with("503 "), "reset");
        assert!(c.send("NOOP\r\n").await.starts_with("250 "));
        assert!(c.send("STARTTLS\r\n").await.starts_with("454 "));
        assert!(c.send("BDAT 10\r\n").await.starts_with("502 "));
        let long = format!("NOOP {}\r\n", "x".repeat(MAX_LINE));
        assert!(c.send(&long).await.starts_with("500 "), "line too long");
        assert!(server.messages().is_empty());
    }

    #[tokio::test]
    async fn scripted_rejections_failures_and_auth() {
        let server = SmtpServer::start().await;
        server.reject_recipient("Gone@Example.com", Reply::new(550, "5.1.1 no such user"));
        server.fail_next_data(Reply::new(451, "4.3.0 try later"));
        server.require_auth("user", "secret");
        let mut c = ready(&server).await;
        assert!(
            c.send("MAIL FROM:<a@x>\r\n").await.starts_with("530 "),
            "auth first"
        );
        let bad = STANDARD.encode("\0user\0wrong");
        assert!(c.send(&format!("AUTH PLAIN {bad}\r\n")).await.starts_with("535 "));
        assert!(c.send("AUTH LOGIN\r\n").await.starts_with("334 VXNlcm5hbWU6"));
        assert!(
            c.send(&format!("{}\r\n", STANDARD.encode("user")))
                .await
                .starts_with("334 ")
        );
        assert!(
            c.send(&format!("{}\r\n", STANDARD.encode("secret")))
                .await
                .starts_with("235 ")
        );
        assert!(c.send("MAIL FROM:<a@x>\r\n").await.starts_with("250 "));
        assert_eq!(
            c.send("RCPT TO:<gone@example.com>\r\n").await,
            "550 5.1.1 no such user\r\n"
        );
        assert!(c.send("RCPT TO:<b@x>\r\n").await.starts_with("250 "));
        assert!(c.send("DATA\r\n").await.starts_with("354 "));
        assert_eq!(c.send("x\r\n.\r\n").await, "451 4.3.0 try later\r\n");
        assert!(server.messages().is_empty(), "a failed DATA keeps nothing");
        assert!(
            c.send("MAIL FROM:<a@x>\r\n").await.starts_with("250 "),
            "a new transaction"
        );
        assert!(c.send("RCPT TO:<b@x>\r\n").await.starts_with("250 "));
        assert!(c.send("DATA\r\n").await.starts_with("354 "));
        assert!(c.send("y\r\n.\r\n").await.starts_with("250 "));
        let m = server
            .wait_for(1, Duration::from_secs(1))
            .await
            .expect("one message");
        assert_eq!(m[0].authenticated_as.as_deref(), Some("user"));
        assert_eq!(m[0].rcpt_to, ["b@x"]);
    }

    #[tokio::test]
    async fn a_reserved_port_refuses_until_it_listens_and_replies_can_be_slow() {
        let reserved = SmtpServer::reserve();
        let port = reserved.port();
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "nobody answers on a reserved port"
        );
        let server = reserved.listen();
        assert_eq!(server.port(), port);
        server.set_delay(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let (_, greeting) = Client::connect(&server).await;
        assert!(greeting.starts_with("220 "));
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "the greeting waited"
        );
        assert!(server.wait_for(1, Duration::from_millis(50)).await.is_none());
    }

    /// invite-svc's client against it: lettre's pooled async transport with credentials.
    #[tokio::test]
    async fn lettre_sends_through_it() {
        use lettre::{
            AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
            transport::smtp::authentication::Credentials,
        };
        let server = SmtpServer::start().await;
        server.require_auth("mesh", "pw");
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(server.port())
            .credentials(Credentials::new("mesh".into(), "pw".into()))
            .build();
        let message = Message::builder()
            .from("Ana <ana@example.com>".parse().unwrap())
            .to("Zoë Brontë <zoe@example.com>".parse().unwrap())
            .subject("Ünïcode in the subject")
            .body("first\n.second starts with a dot\n".to_string())
            .unwrap();
        transport.send(message).await.expect("sent");
        let m = &server.wait_for(1, Duration::from_secs(5)).await.unwrap()[0];
        assert_eq!(m.mail_from, "ana@example.com");
        assert_eq!(m.rcpt_to, ["zoe@example.com"]);
        assert_eq!(m.authenticated_as.as_deref(), Some("mesh"));
        let parsed = m.parsed();
        let to = parsed.to().and_then(|a| a.first()).expect("a To");
        assert_eq!(to.name(), Some("Zoë Brontë"));
        assert!(
            parsed
                .body_text(0)
                .unwrap()
                .contains("\n.second starts with a dot"),
            "{}",
            m.text()
        );
        server.reject_recipient("zoe@example.com", Reply::new(550, "5.1.1 gone"));
        let again = Message::builder()
            .from("ana@example.com".parse().unwrap())
            .to("zoe@example.com".parse().unwrap())
            .body(String::from("x"))
            .unwrap();
        let err = transport.send(again).await.expect_err("refused");
        assert!(err.is_permanent(), "{err}");
    }
}
