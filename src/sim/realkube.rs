//! A real Kubernetes control plane for tests and benchmarks: etcd, kube-apiserver and
//! kube-controller-manager started from static binaries (`../shared/realkube`, unpacked),
//! on free loopback ports, with a throwaway PKI and data directory. No scheduler and no
//! kubelet: the agent (`sim::agent`) plays the node, as it does on the simulation.
//!
//! Never a user's cluster: everything lives in a fresh temporary directory and is torn
//! down on drop, and the processes die with the process that started them (Linux
//! `PR_SET_PDEATHSIG`) even when it is killed.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable naming the directory with the unpacked binaries.
pub const ENV: &str = "SHOWROOM_REALKUBE";
const BINARIES: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// The directory named by `SHOWROOM_REALKUBE`, if it holds the three binaries.
/// `Err` says what is wrong with a directory that was named but is not usable.
pub fn binaries_from_env() -> Result<Option<PathBuf>, String> {
    let Some(dir) = std::env::var_os(ENV).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    for b in BINARIES {
        if !dir.join(b).is_file() {
            return Err(format!(
                "{ENV}={}: {b} is missing (unpack ../shared/realkube/{b}.xz there)",
                dir.display()
            ));
        }
    }
    Ok(Some(dir))
}

pub struct ControlPlane {
    /// Kubeconfig of a cluster-admin (client certificate in `system:masters`).
    pub kubeconfig_path: PathBuf,
    pub url: String,
    /// From the first process start to the controller manager being ready.
    pub startup: Duration,
    dir: PathBuf,
    children: Vec<Child>,
    /// Keep the directory (logs) after a failed start.
    keep: bool,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controller manager first, etcd last.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Directories of control planes whose process was killed before it could clean up.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("showroom-realkube-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `N` distinct free ports. The listeners are held until all are bound: one bound and
/// dropped at a time, the kernel may hand the same port out twice (it did, with
/// thousands of sockets open in the bench, and etcd found its client and peer port
/// the same).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let held = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&held) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

/// Children die with the thread that forked them (`PR_SET_PDEATHSIG`), so they are all
/// forked from one thread that lives as long as the process.
fn spawn(mut cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let tx = {
        let mut guard = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("realkube-spawner".into())
                    .spawn(move || {
                        for (mut cmd, reply) in rx {
                            let _ = reply.send(cmd.spawn());
                        }
                        // The sender lives in a static: this thread never ends.
                    })
                    .expect("spawner thread");
                tx
            })
            .clone()
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let (reply, rx) = mpsc::channel();
    tx.send((cmd, reply))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl (needed to make the control plane's certificates)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A CA, the API server's serving certificate, client certificates for an admin and the
/// controller manager, and the service-account key pair.
fn make_pki(dir: &Path) -> anyhow::Result<()> {
    // Extensions make version-3 certificates, the only kind rustls accepts.
    std::fs::write(
        dir.join("ext.cnf"),
        "[server]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
         keyUsage=digitalSignature,keyEncipherment\n\
         [client]\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "7",
            "-subj",
            "/CN=showroom-test-ca",
        ],
    )?;
    let signed = |name: &str, subj: &str, ext: &str| -> anyhow::Result<()> {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subj,
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "7",
                "-extfile",
                "ext.cnf",
                "-extensions",
                ext,
            ],
        )
    };
    signed("apiserver", "/CN=kube-apiserver", "server")?;
    signed(
        "admin",
        "/O=system:masters/CN=showroom-test-admin",
        "client",
    )?;
    signed(
        "controller-manager",
        "/CN=system:kube-controller-manager",
        "client",
    )?;
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

fn kubeconfig(dir: &Path, url: &str, user: &str) -> String {
    let d = dir.display();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: realkube
  cluster:
    server: {url}
    certificate-authority: {d}/ca.crt
users:
- name: {user}
  user:
    client-certificate: {d}/{user}.crt
    client-key: {d}/{user}.key
contexts:
- name: realkube
  context: {{cluster: realkube, user: {user}}}
current-context: realkube
"
    )
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(std::fs::File::create(dir.join(format!("{name}.log")))?.into())
}

impl ControlPlane {
    /// Starts etcd, then kube-apiserver (waiting for `/readyz`), then
    /// kube-controller-manager (waiting for `default`'s ServiceAccount and
    /// `kube-root-ca.crt`, which it creates).
    pub async fn start(bin: &Path) -> anyhow::Result<ControlPlane> {
        let began = Instant::now();
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!(
            "showroom-realkube-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cp = ControlPlane {
            kubeconfig_path: dir.join("kubeconfig"),
            url: String::new(),
            startup: Duration::ZERO,
            dir: dir.clone(),
            children: vec![],
            keep: false,
        };
        match cp.boot(bin).await {
            Ok(()) => {
                cp.startup = began.elapsed();
                Ok(cp)
            }
            Err(e) => {
                cp.keep = true;
                Err(e)
            }
        }
    }

    async fn boot(&mut self, bin: &Path) -> anyhow::Result<()> {
        let cp = self;
        let dir = cp.dir.clone();
        make_pki(&dir)?;
        let [etcd_port, peer_port, api_port, kcm_port] = free_ports::<4>()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.current_dir(&dir)
            .args(["--name", "realkube", "--data-dir", "etcd-data"])
            .args(["--listen-client-urls", &etcd_url])
            .args(["--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("realkube={peer_url}")])
            // Throwaway data: no need to wait for the disk.
            .arg("--unsafe-no-fsync")
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "etcd")?);
        cp.children.push(spawn(etcd).context("starting etcd")?);

        cp.url = format!("https://127.0.0.1:{api_port}");
        let mut api = Command::new(bin.join("kube-apiserver"));
        api.current_dir(&dir)
            .args(["--etcd-servers", &etcd_url])
            .args(["--secure-port", &api_port.to_string()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .args(["--endpoint-reconciler-type", "none"])
            .args([
                "--tls-cert-file",
                "apiserver.crt",
                "--tls-private-key-file",
                "apiserver.key",
            ])
            .args(["--client-ca-file", "ca.crt"])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args(["--service-account-key-file", "sa.pub"])
            .args(["--service-account-signing-key-file", "sa.key"])
            .args(["--api-audiences", "https://kubernetes.default.svc"])
            .args(["--service-cluster-ip-range", "10.0.0.0/16"])
            .args(["--authorization-mode", "Node,RBAC"])
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "kube-apiserver")?);
        cp.children
            .push(spawn(api).context("starting kube-apiserver")?);
        std::fs::write(&cp.kubeconfig_path, kubeconfig(&dir, &cp.url, "admin"))?;
        std::fs::write(
            dir.join("controller-manager.kubeconfig"),
            kubeconfig(&dir, &cp.url, "controller-manager"),
        )?;
        let client = super::client_from_kubeconfig(kube::config::Kubeconfig::read_from(
            &cp.kubeconfig_path,
        )?)
        .await?;
        cp.wait("kube-apiserver /readyz", Duration::from_secs(60), || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
                client.request_text(req).await.ok().filter(|t| t == "ok")
            }
        })
        .await?;

        let mut kcm = Command::new(bin.join("kube-controller-manager"));
        kcm.current_dir(&dir)
            .args(["--kubeconfig", "controller-manager.kubeconfig"])
            .args([
                "--authentication-kubeconfig",
                "controller-manager.kubeconfig",
            ])
            .args([
                "--authorization-kubeconfig",
                "controller-manager.kubeconfig",
            ])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &kcm_port.to_string(),
            ])
            .args(["--service-account-private-key-file", "sa.key"])
            .args(["--root-ca-file", "ca.crt"])
            .args(["--use-service-account-credentials=true", "--controllers=*"])
            // The quota controller recounts a namespace on a pod's deletion from its own
            // informer, which may not show a pod admission just counted: the status then
            // says too little until the next full resync, 5 minutes by default (a
            // fidelity scenario timed out on it under load). A test cluster resyncs often.
            .args(["--resource-quota-sync-period=10s"])
            .args(["--leader-elect=false"])
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "kube-controller-manager")?);
        cp.children
            .push(spawn(kcm).context("starting kube-controller-manager")?);
        cp.wait(
            "kube-controller-manager (default ServiceAccount and kube-root-ca.crt)",
            Duration::from_secs(90),
            || {
                let client = client.clone();
                async move {
                    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
                    let sa = kube::Api::<ServiceAccount>::namespaced(client.clone(), "default");
                    let cm = kube::Api::<ConfigMap>::namespaced(client, "default");
                    (sa.get_opt("default").await.ok()??.metadata.name.is_some()
                        && cm.get_opt("kube-root-ca.crt").await.ok()?.is_some())
                    .then_some(())
                }
            },
        )
        .await?;
        Ok(())
    }

    /// Polls `check`; fails naming what did not come up, with the tail of its logs.
    async fn wait<T, F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        check: F,
    ) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return Ok(v);
            }
            for c in &mut self.children {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "a control-plane process exited ({status}) while waiting for {what}; logs in {}",
                        self.dir.display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{what} not ready after {timeout:?}; logs in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where the logs and certificates are (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
