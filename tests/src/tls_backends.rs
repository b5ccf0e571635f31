//! TLS-only Postgres and Redis for the encrypted-in-transit tests (issue #13), started from
//! the machine's own binaries (Debian's `postgresql` and `redis-server` packages) on free
//! loopback ports, with a throwaway CA and a server certificate for `localhost` and
//! 127.0.0.1. Each server also listens on 127.0.0.2, a name its certificate does not carry,
//! so a test can show that a wrong host name is refused.
//!
//! Where the binaries are missing the tests say why and pass, as the browser tests do; with
//! `REQUIRE_TLS_BACKENDS=1` (CI) a missing server is a failure.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// How long a server gets to accept its first verified connection.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Says why a backend test did nothing; under `REQUIRE_TLS_BACKENDS=1` that is a failure.
pub fn unavailable(what: &str, why: &str) {
    if std::env::var("REQUIRE_TLS_BACKENDS").is_ok_and(|v| v == "1") {
        panic!("{what} is required (REQUIRE_TLS_BACKENDS=1) but unavailable: {why}");
    }
    eprintln!("skipping the {what} checks: {why} (set REQUIRE_TLS_BACKENDS=1 to make this a failure)");
}

/// A CA, a server certificate it signed, and an unrelated CA, as PEM files.
pub struct Pki {
    dir: PathBuf,
    pub ca: PathBuf,
    /// A CA that signed nothing here: trusting only it must refuse the servers.
    pub wrong_ca: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA")
}

impl Pki {
    pub fn new() -> Pki {
        let dir = scratch_dir("pki");
        let issuer = ca("referral-mesh test CA");
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("a server certificate");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        Pki {
            ca: write("ca.pem", &issuer.pem()),
            wrong_ca: write("wrong-ca.pem", &ca("someone else's CA").pem()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            dir,
        }
    }

    /// Writes the server's certificate and key into `dir` for `owner` (key mode 0600, as
    /// Postgres insists).
    fn install(&self, dir: &Path, owner: Option<(u32, u32)>) -> (PathBuf, PathBuf) {
        let cert = dir.join("server.crt");
        let key = dir.join("server.key");
        std::fs::write(&cert, &self.cert_pem).expect("write server.crt");
        std::fs::write(&key, &self.key_pem).expect("write server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        for path in [&cert, &key] {
            chown(path, owner);
        }
        (cert, key)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("referral-tls-{tag}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a scratch dir");
    dir
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the server's user");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process stopped (SIGINT: Postgres' fast shutdown, Redis' clean exit) and its
/// scratch directory removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// `Err` with the server's log when it exited before answering.
    fn check_running(&mut self, what: &str) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            status => Err(format!(
                "{what} exited ({status:?}): {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            )),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log_file(dir: &Path) -> Stdio {
    std::fs::File::create(dir.join("server.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// A Postgres that takes only TLS connections (`hostssl` lines alone in pg_hba.conf).
pub struct TlsPostgres {
    server: Server,
    pub port: u16,
}

impl TlsPostgres {
    /// `Err` says why there is none (no binaries, no unprivileged user to run them as).
    pub async fn start(pki: &Pki) -> Result<TlsPostgres, String> {
        let bin = postgres_bin_dir().ok_or("no Postgres server binaries (initdb, postgres) found")?;
        // Postgres refuses to run as root: as root, run it as the `postgres` user.
        let owner = if rustix::process::geteuid().is_root() {
            Some(
                user_ids("postgres")
                    .ok_or("running as root and there is no `postgres` user to run Postgres as")?,
            )
        } else {
            None
        };
        let as_owner = |command: &mut Command| {
            // Our working directory may be closed to that user.
            command.current_dir(std::env::temp_dir());
            if let Some((uid, gid)) = owner {
                std::os::unix::process::CommandExt::uid(command, uid);
                std::os::unix::process::CommandExt::gid(command, gid);
            }
        };
        let dir = scratch_dir("postgres");
        chown(&dir, owner);
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]);
        as_owner(&mut initdb);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        pki.install(&data, owner);
        // TLS or nothing, from either loopback address.
        let hba = data.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "hostssl all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.2/32 trust\n",
        )
        .map_err(|e| format!("pg_hba.conf: {e}"))?;
        chown(&hba, owner);
        let port = free_port();
        let mut postgres = Command::new(bin.join("postgres"));
        postgres.arg("-D").arg(&data);
        for setting in [
            "listen_addresses=127.0.0.1,127.0.0.2".to_string(),
            format!("port={port}"),
            format!("unix_socket_directories={}", dir.display()),
            "ssl=on".into(),
            "ssl_cert_file=server.crt".into(),
            "ssl_key_file=server.key".into(),
            "fsync=off".into(),
            "max_connections=60".into(),
        ] {
            postgres.args(["-c", &setting]);
        }
        postgres.stdout(Stdio::null()).stderr(log_file(&dir));
        as_owner(&mut postgres);
        let child = postgres.spawn().map_err(|e| format!("postgres: {e}"))?;
        let mut server = Server { child, dir };
        let pg = loop_until_ready(&mut server, "postgres", || {
            let url = postgres_url("localhost", port, &pki.ca);
            async move {
                use sqlx::Connection;
                sqlx::PgConnection::connect(&url)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        pg.map(|()| TlsPostgres { server, port })
    }

    /// A `sslmode=verify-full` URL for `host`, trusting `ca`.
    pub fn url(&self, host: &str, ca: &Path) -> String {
        postgres_url(host, self.port, ca)
    }

    /// Any URL on this server: `postgres://postgres@127.0.0.1:{port}/postgres{query}`.
    pub fn url_with(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres{query}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.server.dir.join("server.log")).unwrap_or_default()
    }
}

fn postgres_url(host: &str, port: u16, ca: &Path) -> String {
    format!(
        "postgres://postgres@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    )
}

/// The newest `/usr/lib/postgresql/*/bin` with `initdb` and `postgres` (Debian's layout), or
/// the directory of an `initdb` on PATH.
fn postgres_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .find(|dir| has_both(dir))
    })
}

/// uid and gid of `name` from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

/// A Redis with only a TLS port (`--port 0`), not asking clients for certificates.
pub struct TlsRedis {
    _server: Server,
    pub port: u16,
}

impl TlsRedis {
    pub async fn start(pki: &Pki) -> Result<TlsRedis, String> {
        let dir = scratch_dir("redis");
        let (cert, key) = pki.install(&dir, None);
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "127.0.0.2"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca)
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(log_file(&dir))
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("redis-server: {e}"));
            }
        };
        let mut server = Server { child, dir };
        let url = format!("rediss://localhost:{port}");
        let ca = pki.ca.clone();
        loop_until_ready(&mut server, "redis-server", || {
            let (url, ca) = (url.clone(), ca.clone());
            async move {
                let client = referral_common::redis_client::client(&url, Some(&ca)).map_err(|e| e.problem)?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        Ok(TlsRedis {
            _server: server,
            port,
        })
    }

    /// `rediss://{host}:{port}`.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }
}

/// Tries `connect` until it works, the server exits, or [`START_LIMIT`] passes.
async fn loop_until_ready<F, Fut>(server: &mut Server, what: &str, mut connect: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        server.check_running(what)?;
        let last = match connect().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what} did not accept a verified TLS connection: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_reads_passwd() {
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-here"), None);
    }
}
