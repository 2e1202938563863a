//! TLS to PostgreSQL and the store's secrets, through the code paths users take.
//!
//! `require` runs against the machine's server (127.0.0.1:5432; Debian turns `ssl = on` with
//! its snakeoil certificate). Everything else runs against a private server each test starts:
//! `initdb` in a temporary directory, a CA and a server certificate for `localhost` made with the
//! `openssl` CLI, `hostnossl` connections rejected and passwords required (SCRAM), so that a
//! connection that succeeds proves both TLS and the password source. The server is stopped when
//! the test ends, pass or fail.
//!
//! Needs PostgreSQL's server binaries (`/usr/lib/postgresql/*/bin`, or `OPTOUT_TEST_PG_BIN`)
//! and `openssl`; as root, also the `postgres` user (initdb refuses root). A missing piece fails
//! the test with what to install; `OPTOUT_TEST_SKIP_TLS=1` skips these tests and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection;

use crate::common::optout::{bare_command, output_of};

/// The private server's login, with characters that must be percent-encoded in a URL.
const USER: &str = "optout";
const PASSWORD: &str = "Pa@ss:w/rd%1";
const PASSWORD_IN_URL: &str = "Pa%40ss%3Aw%2Frd%251";

/// Whether the tests were asked to skip (and then say so).
fn skipped(test: &str) -> bool {
    let skip = std::env::var("OPTOUT_TEST_SKIP_TLS").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("SKIPPED {test}: OPTOUT_TEST_SKIP_TLS=1");
    }
    skip
}

/// Runs a command, failing the test with its output if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// PostgreSQL's server binaries (initdb, pg_ctl).
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("OPTOUT_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: install postgresql, \
         set OPTOUT_TEST_PG_BIN, or set OPTOUT_TEST_SKIP_TLS=1 to skip",
    )
}

/// A free TCP port on 127.0.0.1 (the kernel's pick, released for the server to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A CA and the files signed by it, made with the `openssl` CLI.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn create(dir: &Path) -> Pki {
        let openssl = |args: &[&str]| {
            run(Command::new("openssl").args(args).current_dir(dir));
        };
        for ca in ["ca", "wrong-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=optout test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A private PostgreSQL server with TLS only and password authentication; stopped on drop.
struct Server {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    pki: Pki,
}

impl Server {
    fn start() -> Server {
        let bin = pg_bin();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("optout-tls-")
            .tempdir()
            .unwrap();
        let pki = Pki::create(dir.path());
        let data = dir.path().join("data");
        if as_postgres {
            // initdb refuses to run as root; the server's files and key belong to `postgres`.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let server = Server {
            data: data.clone(),
            bin,
            as_postgres,
            port: free_port(),
            pki,
            _dir: dir,
        };
        server.pg(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-N",
            ],
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all postgres trust\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostnossl all all ::/0 reject\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
        )
        .unwrap();
        let conf = format!(
            "\nport = {}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n\
             password_encryption = 'scram-sha-256'\n",
            server.port,
            server.data.display(),
            server.pki.path("server.crt"),
            server.pki.path("server.key"),
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&server.pki.dir));
        }
        run(Command::new("chmod")
            .arg("600")
            .arg(server.pki.path("server.key")));
        server.pg(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &data.join("server.log").display().to_string(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        server.pg(
            "psql",
            &[
                "-h",
                &data.display().to_string(),
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"),
                "-c",
                &format!("CREATE DATABASE {USER} OWNER {USER}"),
            ],
        );
        server
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn pg(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        run(cmd.args(args).current_dir("/"))
    }

    /// A store URL for this server; `password` goes in the userinfo when given.
    fn url(&self, host: &str, password: Option<&str>, params: &str) -> String {
        let userinfo = match password {
            Some(p) => format!("{USER}:{p}"),
            None => USER.to_string(),
        };
        format!("postgres://{userinfo}@{host}:{}/{USER}?{params}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .output();
    }
}

/// Opens the store as every optout command does (URL parsing, the `any` driver, migrations).
async fn open(url: &str) -> Result<(), String> {
    let store = optout::store::open(url, 2)
        .await
        .map_err(|e| e.to_string())?;
    store.ping().await.map_err(|e| e.to_string())
}

/// Whether the session of a connection made with `url` is encrypted, as the server sees it.
async fn session_uses_tls(url: &str) -> bool {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    ssl
}

#[tokio::test]
async fn require_encrypts_the_connection_to_the_local_server() {
    if skipped("require_encrypts_the_connection_to_the_local_server") {
        return;
    }
    let admin = std::env::var("OPTOUT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = sqlx::PgConnection::connect(&format!("{admin}?sslmode=disable"))
        .await
        .expect("the local PostgreSQL server (OPTOUT_TEST_PG) must be running");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        ssl, "on",
        "the local server has ssl = off: set `ssl = on` in postgresql.conf (Debian's snakeoil \
         certificate will do) and reload, or set OPTOUT_TEST_SKIP_TLS=1"
    );
    let url = format!("{admin}?sslmode=require");
    open(&url).await.expect("sslmode=require through the store");
    assert!(
        session_uses_tls(&url).await,
        "sslmode=require gave a plain session"
    );
    assert!(!session_uses_tls(&format!("{admin}?sslmode=disable")).await);
}

#[tokio::test]
async fn verify_full_trusts_only_the_given_ca_and_the_right_host() {
    if skipped("verify_full_trusts_only_the_given_ca_and_the_right_host") {
        return;
    }
    let server = Server::start();
    let ca = server.pki.path("ca.crt");
    let wrong_ca = server.pki.path("wrong-ca.crt");
    let with = |host: &str, params: &str| server.url(host, Some(PASSWORD_IN_URL), params);

    // The right CA and host name: connects, migrates, and the session is encrypted.
    let good = with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    open(&good).await.expect("verify-full with the server's CA");
    assert!(session_uses_tls(&good).await);
    // require and verify-ca connect too; the server rejects every plain connection.
    open(&with("localhost", "sslmode=require"))
        .await
        .expect("require");
    open(&with(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-ca ignores the host name");
    let plain = open(&with("localhost", "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(
        plain.contains("no encryption") || plain.contains("pg_hba"),
        "{plain}"
    );

    // verify-full: the certificate names localhost, not 127.0.0.1.
    let wrong_host = open(&with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(
        wrong_host.to_lowercase().contains("certificate"),
        "{wrong_host}"
    );

    // A CA that did not sign the server's certificate: refused, with a message that says why
    // and what to check, and without the password (through the binary, as an operator sees it).
    let bad = with(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={wrong_ca}"),
    );
    let err = open(&bad).await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
    let wrong_host_url = with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    for url in [&bad, &wrong_host_url] {
        let (code, text) = output_of(&mut bare_command(&["--store", url, "migrate"]));
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("invalid peer certificate"), "{text}");
        assert!(
            text.contains("(TLS: check sslmode, that sslrootcert names the CA"),
            "no hint: {text}"
        );
        assert!(
            !text.contains(PASSWORD_IN_URL) && !text.contains(PASSWORD),
            "password leaked: {text}"
        );
    }
}

#[tokio::test]
async fn the_password_comes_from_pgpassword_pgpassfile_or_the_store_file() {
    if skipped("the_password_comes_from_pgpassword_pgpassfile_or_the_store_file") {
        return;
    }
    let server = Server::start();
    let ca = server.pki.path("ca.crt");
    let params = format!("sslmode=verify-full&sslrootcert={ca}");
    let no_password = server.url("localhost", None, &params);

    // Without a password the server refuses: the cases below prove where it came from.
    let (code, text) = output_of(&mut bare_command(&["--store", &no_password, "migrate"]));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("password"), "{text}");

    let (code, text) =
        output_of(bare_command(&["--store", &no_password, "migrate"]).env("PGPASSWORD", PASSWORD));
    assert_eq!(code, Some(0), "PGPASSWORD: {text}");

    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!("localhost:{}:{USER}:{USER}:{PASSWORD}\n", server.port),
    )
    .unwrap();
    run(Command::new("chmod").arg("600").arg(&pgpass));
    let (code, text) =
        output_of(bare_command(&["--store", &no_password, "migrate"]).env("PGPASSFILE", &pgpass));
    assert_eq!(code, Some(0), "PGPASSFILE: {text}");

    // The whole URL, password included, from a file (flag or environment): nothing on the
    // command line. Printed redacted.
    let store_file = dir.path().join("store-url");
    let with_password = server.url("localhost", Some(PASSWORD_IN_URL), &params);
    std::fs::write(&store_file, format!("  {with_password}\n")).unwrap();
    let file = store_file.display().to_string();
    let (code, text) = output_of(&mut bare_command(&["--store-file", &file, "migrate"]));
    assert_eq!(code, Some(0), "--store-file: {text}");
    assert!(
        text.contains("schema up to date: postgres://optout:***@localhost"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD_IN_URL), "password printed: {text}");
    let (code, text) = output_of(bare_command(&["migrate"]).env("OPTOUT_STORE_FILE", &store_file));
    assert_eq!(code, Some(0), "OPTOUT_STORE_FILE: {text}");
    // The file wins over OPTOUT_STORE, which the container image sets for its SQLite default.
    let (code, text) = output_of(
        bare_command(&["--store-file", &file, "migrate"])
            .env("OPTOUT_STORE", "sqlite:///nonexistent/dir/optout.db"),
    );
    assert_eq!(code, Some(0), "--store-file with OPTOUT_STORE set: {text}");
    assert!(text.contains("postgres://optout:***@localhost"), "{text}");

    // A wrong password, in each spelling, is never printed back.
    for (url, secret) in [
        (
            server.url("localhost", Some("Wr%40ng%3Apass"), &params),
            "Wr%40ng%3Apass",
        ),
        (
            server.url("localhost", Some("Wr@ng:pass"), &params),
            "ng:pass",
        ),
        (format!("{no_password}&password=TopSecret1"), "TopSecret1"),
    ] {
        let (code, text) = output_of(&mut bare_command(&["--store", &url, "migrate"]));
        assert_eq!(code, Some(1), "{text}");
        assert!(!text.contains(secret), "`{secret}` printed: {text}");
        assert!(text.contains("cannot open store"), "{text}");
    }

    // --store and --store-file together: a usage mistake, named.
    let (code, text) = output_of(&mut bare_command(&[
        "--store",
        &no_password,
        "--store-file",
        &file,
        "migrate",
    ]));
    assert_eq!(code, Some(2), "{text}");
    assert!(!text.contains(PASSWORD_IN_URL), "{text}");
}
