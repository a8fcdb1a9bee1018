//! Test fixtures: a throwaway PostgreSQL server on loopback.
//!
//! [`PgServer::start`] runs `initdb` and `pg_ctl` from the server binaries
//! (`pg_config --bindir`, or `PATH`) in a temporary directory on a free port;
//! dropping the guard stops the server and deletes its files. PostgreSQL
//! refuses to run as root, so when the tests run as root the server is started
//! through `runuser -u postgres`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running PostgreSQL server, stopped on drop.
pub struct PgServer {
    bindir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    _root: tempfile::TempDir,
}

/// Why no server could be started.
#[derive(Debug)]
pub enum PgUnavailable {
    /// The server binaries are not installed: tests print a notice and skip.
    NoBinaries,
    /// The binaries exist but starting failed: tests must fail.
    StartFailed(String),
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        if output.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Some(dir);
            }
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, PgUnavailable> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| PgUnavailable::StartFailed(e.to_string()))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| PgUnavailable::StartFailed(e.to_string()))
}

impl PgServer {
    /// Starts a fresh server. Every failure after the binaries were found is
    /// `StartFailed`, never a silent skip.
    pub fn start() -> Result<PgServer, PgUnavailable> {
        let bindir = find_bindir().ok_or(PgUnavailable::NoBinaries)?;
        let as_postgres_user = is_root();
        let root =
            tempfile::Builder::new().prefix("elspeth-pg-").tempdir().map_err(|e| PgUnavailable::StartFailed(e.to_string()))?;
        let data_dir = root.path().join("data");
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(root.path())
                .status()
                .map_err(|e| PgUnavailable::StartFailed(format!("chown: {e}")))?;
            if !status.success() {
                return Err(PgUnavailable::StartFailed("chown of the server directory failed".into()));
            }
        }
        let port = free_port()?;
        let server = PgServer { bindir, data_dir, port, as_postgres_user, _root: root };
        server.run("initdb", &["-D", path_str(&server.data_dir)?, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])?;
        let log = server.data_dir.parent().unwrap_or(&server.data_dir).join("server.log");
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            path_str(server.data_dir.parent().unwrap_or(&server.data_dir))?
        );
        server.run("pg_ctl", &["-D", path_str(&server.data_dir)?, "-l", path_str(&log)?, "-o", &options, "-w", "start"])?;
        Ok(server)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), PgUnavailable> {
        let program = self.bindir.join(tool);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command.args(args).output().map_err(|e| PgUnavailable::StartFailed(format!("{tool}: {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(PgUnavailable::StartFailed(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    /// URL of the default `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// URL of a database on this server.
    pub fn database_url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}", uuid::Uuid::now_v7().simple());
        let psql = self.bindir.join("psql");
        let output = Command::new(psql)
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output();
        match output {
            Ok(output) if output.status.success() => self.database_url(&name),
            Ok(output) => panic!("CREATE DATABASE failed: {}", String::from_utf8_lossy(&output.stderr)),
            Err(error) => panic!("psql could not be started: {error}"),
        }
    }
}

fn path_str(path: &Path) -> Result<&str, PgUnavailable> {
    path.to_str().ok_or_else(|| PgUnavailable::StartFailed(format!("{} is not UTF-8", path.display())))
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(data_dir) = self.data_dir.to_str() {
            let _ = self.run("pg_ctl", &["-D", data_dir, "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// Starts a server for a test, or returns `None` with a printed notice when
/// the binaries are absent. Panics when they exist but the server fails.
pub fn pg_server_or_skip(test: &str) -> Option<PgServer> {
    match PgServer::start() {
        Ok(server) => Some(server),
        Err(PgUnavailable::NoBinaries) => {
            eprintln!("NOTICE: {test}: PostgreSQL server binaries not found; skipping the PostgreSQL part");
            None
        }
        Err(PgUnavailable::StartFailed(reason)) => panic!("{test}: PostgreSQL server could not be started: {reason}"),
    }
}
