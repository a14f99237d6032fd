//! Test support, not part of the API: real etcd members on free loopback ports, started as one
//! cluster, that tests can stop, kill and restart. Used by the engine's unit tests and by the
//! e2e tests.
//!
//! Every member is started by one long-lived thread with `PR_SET_PDEATHSIG` (Linux), so the
//! members die with the test process even when nothing drops their [`EtcdCluster`] (a static
//! shared by a test binary, a test that panics).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::EtcdUrl;

/// Where the etcd binary is looked for (`MAPREG_ETCD` overrides it).
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// The etcd binary, if there is one.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("MAPREG_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ETCD_BIN));
    path.exists().then_some(path)
}

/// True when etcd tests can run; false (after printing why) when they should be skipped.
/// Panics when etcd is missing and `CI` is set: CI installs it, so missing is a failure there.
pub fn available(test: &str) -> bool {
    if etcd_binary().is_some() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {ETCD_BIN} is missing and CI is set (.ci/run installs etcd-server)");
    }
    eprintln!("skipping {test}: {ETCD_BIN} is missing (apt-get install etcd-server)");
    false
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// N etcd members on 127.0.0.1, one cluster; killed (and their data removed) on drop.
pub struct EtcdCluster {
    dir: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from the one thread that lives as long as the process, so that
/// `PR_SET_PDEATHSIG` (which fires when the spawning *thread* ends) fires only at exit.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("etcd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_here(&mut cmd));
                }
                // The channel is static: never reached, so this thread outlives every member.
                loop {
                    std::thread::park();
                }
            })
            .map(|_| ())
            .unwrap_or(());
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("the etcd spawner is poisoned"))?
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the etcd spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the etcd spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
fn spawn_here(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(not(target_os = "linux"))]
fn spawn_here(cmd: &mut Command) -> std::io::Result<Child> {
    cmd.spawn()
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET /health` of a member: true when it answers `"health":"true"` (it has a leader).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// Where a test binary keeps a shared cluster: started once, or the error that stopped it.
type Shared = OnceLock<Result<EtcdCluster, String>>;

impl EtcdCluster {
    /// Starts `n` members as one new cluster and waits (up to 30 s) until every one is healthy.
    pub fn start(n: usize) -> Result<EtcdCluster, String> {
        if etcd_binary().is_none() {
            return Err(format!("{ETCD_BIN} is missing"));
        }
        let dir = std::env::temp_dir().join(format!(
            "mapreg-etcd-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port().map_err(|e| e.to_string())?,
                peer_port: free_port().map_err(|e| e.to_string())?,
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            members,
            initial_cluster,
        };
        for i in 0..n {
            cluster.launch(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// One single-member cluster per test binary, started on first use and killed at exit.
    /// Tests sharing it use a fresh prefix each ([`EtcdCluster::fresh_url`]).
    pub fn shared() -> Result<&'static EtcdCluster, String> {
        static SHARED: Shared = OnceLock::new();
        EtcdCluster::shared_in(&SHARED, 1)
    }

    /// One 3-member cluster per test binary, started on first use and killed at exit: the
    /// multi-node tests and the e2e suites run with `MAPREG_TEST_STORE=etcd` share it, each
    /// on a fresh prefix. Tests that stop members start a cluster of their own.
    pub fn shared_three() -> Result<&'static EtcdCluster, String> {
        static SHARED: Shared = OnceLock::new();
        EtcdCluster::shared_in(&SHARED, 3)
    }

    /// The cluster of `n` members in `cell`, started (and cleaned up at exit) on first use;
    /// a start that failed is answered with its error every time.
    fn shared_in(cell: &'static Shared, n: usize) -> Result<&'static EtcdCluster, String> {
        cell.get_or_init(|| {
            let cluster = EtcdCluster::start(n)?;
            cluster.clean_up_at_exit();
            Ok(cluster)
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// A static is never dropped: at exit, kill the members and remove their data here.
    fn clean_up_at_exit(&self) {
        static AT_EXIT: Mutex<Vec<(Vec<u32>, PathBuf)>> = Mutex::new(Vec::new());
        extern "C" fn clean_up() {
            let Ok(mut all) = AT_EXIT.lock() else {
                return;
            };
            for (pids, dir) in all.drain(..) {
                for pid in pids {
                    // SAFETY: signalling and reaping our own children.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                    }
                }
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        let pids = self
            .members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect();
        if let Ok(mut all) = AT_EXIT.lock() {
            if all.is_empty() {
                // SAFETY: registers a plain function with no captured state.
                unsafe {
                    libc::atexit(clean_up);
                }
            }
            all.push((pids, self.dir.clone()));
        }
    }

    fn launch(&mut self, i: usize) -> Result<(), String> {
        let bin = etcd_binary().ok_or_else(|| format!("{ETCD_BIN} is missing"))?;
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))
            .map_err(|e| e.to_string())?;
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(bin);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token()])
            // Fast elections, so tests that stop members do not wait for long timeouts.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn(cmd).map_err(|e| format!("cannot start etcd {}: {e}", m.name))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    fn token(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mapreg-test".into())
    }

    /// Waits until every running member reports healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            while !healthy(m.client_port) {
                if Instant::now() > deadline {
                    return Err(format!(
                        "etcd member {} on port {} not healthy after {timeout:?}; log: {}",
                        m.name,
                        m.client_port,
                        self.log_tail(&m.name)
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn log_tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// `127.0.0.1:PORT` of every member (running or not).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The store URL of every member with `prefix`.
    pub fn url(&self, prefix: &str) -> EtcdUrl {
        EtcdUrl {
            endpoints: self.endpoints(),
            prefix: prefix.to_string(),
        }
    }

    /// The store URL with a prefix no other test uses.
    pub fn fresh_url(&self) -> EtcdUrl {
        self.url(&format!("/test-{:016x}/", rand::random::<u64>()))
    }

    /// The data directory of all members (and their logs, `NAME.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops member `i` gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            // SAFETY: kill(2) on a child we own and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data and ports (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill)); does not wait for it to be healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.members[i].child.is_none() {
            self.launch(i)?;
        }
        Ok(())
    }

    /// True while member `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
