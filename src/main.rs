//! The `showroom` command line: parse, build, run.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use showroom::app::{self, Config};
use showroom::cluster::crd::Instance;
use showroom::cluster::sweeper::{self, SweepOptions};
use showroom::domain::duration;
use showroom::domain::template::Catalogue;
use showroom::domain::users::{Role, UserEntry, Users, hash_token, new_token};
use showroom::metrics::Metrics;
use showroom::sim::{SimCluster, SimOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// mimalloc gives freed memory back to the system; with glibc's malloc, `showroom serve`
// held about 75 MiB RSS for an 18 MiB live heap at 2,000 demos (heaptrack), the rest
// kept from bursts such as a watch's initial list. Measured in README (issue 10).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "showroom",
    version,
    about = "Live product demos on Kubernetes: vClusters from snapshot templates, with leases, sleep and wake"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        env = "SHOWROOM_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// This installation's name: it sees and changes only Demos and namespaces labelled
    /// showroom.dev/instance=<name>, so several installations can share a host cluster.
    #[arg(long, env = "SHOWROOM_INSTANCE", default_value = "default", value_parser = parse_instance)]
    instance: Instance,
    /// Directory of demo templates (one YAML file each).
    #[arg(long, env = "SHOWROOM_SNAPSHOTS", default_value = "snapshots")]
    snapshots: PathBuf,
    /// Cron schedule of the in-process cleanup sweep (5 or 6 fields; "off" disables it).
    #[arg(long, env = "SHOWROOM_SWEEP_SCHEDULE", default_value = "0 * * * * *")]
    sweep_schedule: String,
    /// At most one activity write per demo per this interval.
    #[arg(long, env = "SHOWROOM_ACTIVITY_INTERVAL", default_value = "30s", value_parser = parse_std_duration)]
    activity_interval: std::time::Duration,
    /// Active demos a user may hold at once (a user's maxDemos overrides it).
    #[arg(long, env = "SHOWROOM_MAX_DEMOS_PER_USER", default_value_t = 5)]
    max_demos_per_user: u32,
    /// The most demos running at once on the cluster, warm-pool members included (a
    /// sleeping demo does not count); starts and wakes beyond it are refused. 0: none.
    #[arg(long, env = "SHOWROOM_MAX_RUNNING_DEMOS", default_value_t = 0)]
    max_running_demos: u32,
    /// The sweep deletes an orphaned demo namespace only when it is older than this.
    #[arg(long, env = "SHOWROOM_ORPHAN_GRACE", default_value = "10m", value_parser = parse_duration)]
    orphan_grace: chrono::Duration,
    /// The sweep retries and reports deletions older than this.
    #[arg(long, env = "SHOWROOM_STUCK_AFTER", default_value = "10m", value_parser = parse_duration)]
    stuck_after: chrono::Duration,
    /// Base URL of the UI and of share links (default: http://<listen address>).
    #[arg(long, env = "SHOWROOM_PUBLIC_URL")]
    public_url: Option<String>,
    /// Each share link gets the host <link-id>.<share-domain> (a wildcard DNS name and
    /// certificate point it at showroom). Default: localhost:<port>.
    #[arg(long, env = "SHOWROOM_SHARE_DOMAIN")]
    share_domain: Option<String>,
    /// Secret that signs session cookies (all replicas need the same one). Default:
    /// random, so sessions end when the process does.
    #[arg(long, env = "SHOWROOM_SESSION_KEY", hide_env_values = true)]
    session_key: Option<String>,
    /// File holding the session key (a mounted Secret); used when --session-key is not.
    #[arg(long, env = "SHOWROOM_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
    /// Trust X-Forwarded-Email / X-Forwarded-Groups from this SSO proxy address
    /// (repeatable). Without it those headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "SHOWROOM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Post expiry notices here (Slack-compatible incoming webhook URL).
    #[arg(long, env = "SHOWROOM_NOTICE_WEBHOOK", hide_env_values = true)]
    notice_webhook: Option<String>,
    /// Announce a sleep or deletion this long before it happens.
    #[arg(long, env = "SHOWROOM_NOTICE_LEAD", default_value = "15m", value_parser = parse_duration)]
    notice_lead: chrono::Duration,
    /// Members of this SSO group are admins.
    #[arg(long, env = "SHOWROOM_ADMIN_GROUP", default_value = "showroom-admins")]
    admin_group: String,
    /// The product name at the top of the pages prospects see (landing, waking,
    /// inactive).
    #[arg(long, env = "SHOWROOM_BRAND_NAME")]
    brand_name: Option<String>,
    /// The brand colour of those pages (#rrggbb).
    #[arg(long, env = "SHOWROOM_BRAND_COLOR")]
    brand_color: Option<String>,
    /// A logo for those pages (.png, .jpg or .svg, at most 256 KiB), served by showroom.
    #[arg(long, env = "SHOWROOM_BRAND_LOGO")]
    brand_logo: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, run the controller and the scheduled sweep against KUBECONFIG or
    /// the in-cluster config.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SHOWROOM_LISTEN", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Users, roles and token hashes (YAML).
        #[arg(
            long,
            env = "SHOWROOM_USERS",
            default_value = "/etc/showroom/users.yaml"
        )]
        users: PathBuf,
        /// Run the controller and sweeps only on the replica holding the leader Lease.
        /// Turn off only when exactly one replica runs.
        #[arg(long, env = "SHOWROOM_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// showroom's own namespace: the leader Lease and the slot Leases live there.
        #[arg(long, env = "POD_NAMESPACE", default_value = "showroom")]
        namespace: String,
        /// Name of the leader Lease.
        #[arg(long, env = "SHOWROOM_LEASE_NAME", default_value = "showroom-leader")]
        lease_name: String,
        /// Seconds a leader may go without renewing before another replica takes over.
        #[arg(long, env = "SHOWROOM_LEASE_SECONDS", default_value_t = 15)]
        lease_seconds: u64,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Run everything against a simulated cluster started in-process: no cluster needed.
    Dev {
        /// Port on 127.0.0.1.
        #[arg(long, env = "SHOWROOM_PORT", default_value_t = 8080)]
        port: u16,
        /// Where dev.json and the simulated cluster's kubeconfig are written.
        #[arg(long, env = "SHOWROOM_STATE_DIR", default_value = ".showroom")]
        state_dir: PathBuf,
        /// How long a simulated vcluster takes to become ready.
        #[arg(long, env = "SHOWROOM_BOOT_DELAY", default_value = "3s", value_parser = parse_std_duration)]
        boot_delay: std::time::Duration,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// One cleanup pass, then exit (for a Kubernetes CronJob).
    Sweep {
        /// The installation whose demos and namespaces are swept.
        #[arg(long, env = "SHOWROOM_INSTANCE", default_value = "default", value_parser = parse_instance)]
        instance: Instance,
        /// Print the plan as a table and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, env = "SHOWROOM_SNAPSHOTS", default_value = "snapshots")]
        snapshots: PathBuf,
        #[arg(long, env = "SHOWROOM_ORPHAN_GRACE", default_value = "10m", value_parser = parse_duration)]
        orphan_grace: chrono::Duration,
        #[arg(long, env = "SHOWROOM_STUCK_AFTER", default_value = "10m", value_parser = parse_duration)]
        stuck_after: chrono::Duration,
    },
    /// Print the Demo CustomResourceDefinition as YAML.
    Crd,
    /// Template catalogue tools.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// User tools.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Validate every template in DIR; exits non-zero naming each bad file and field.
    Check { dir: PathBuf },
    /// Print the catalogue in DIR as the ConfigMap deploy/ mounts (validated first).
    Configmap { dir: PathBuf },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Read a password on standard input and print its Argon2 hash (passwordArgon2).
    HashPassword,
    /// Print a new random token and the users.yaml entry holding its hash.
    NewToken {
        name: String,
        #[arg(long, default_value = "sales")]
        role: String,
    },
}

/// The snapshots/ directory as a ConfigMap, so `kubectl apply -k deploy/` ships it.
fn snapshots_configmap(dir: &Path) -> anyhow::Result<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"));
    files.sort();
    let mut data = serde_json::Map::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        data.insert(
            name,
            serde_json::Value::String(std::fs::read_to_string(&f)?),
        );
    }
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "showroom-snapshots", "namespace": "showroom", "labels": {"app.kubernetes.io/name": "showroom"}},
        "data": data,
    });
    Ok(format!(
        "# Generated by `showroom templates configmap snapshots/`; a test keeps it in sync.\n{}",
        serde_saphyr::to_string(&cm)?
    ))
}

fn parse_instance(s: &str) -> Result<Instance, String> {
    Instance::new(s)
}

fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    duration::parse(s)
}

fn parse_std_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|e| format!("invalid duration {s:?}: {e}"));
    }
    duration::parse(s)?.to_std().map_err(|e| e.to_string())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOWROOM_LOG")
        .unwrap_or_else(|_| "info,kube=warn,hyper=warn".into());
    // Colours only on a terminal: a file or a log collector gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn load_catalogue(dir: &Path) -> anyhow::Result<Catalogue> {
    Catalogue::load_dir(dir).map_err(|errs| {
        for e in &errs {
            eprintln!("error: {e}");
        }
        anyhow::anyhow!(
            "{} invalid template file(s) in {}",
            errs.len(),
            dir.display()
        )
    })
}

fn config(listen: SocketAddr, a: &ServeArgs) -> anyhow::Result<Config> {
    let schedule = (a.sweep_schedule != "off").then(|| a.sweep_schedule.clone());
    if let Some(s) = &schedule {
        app::parse_schedule(s).map_err(|e| anyhow::anyhow!("--sweep-schedule: {e}"))?;
    }
    Ok(Config {
        listen,
        instance: a.instance.clone(),
        upstream_override: None,
        sweep_schedule: schedule,
        sweep: SweepOptions {
            orphan_grace: a.orphan_grace,
            stuck_after: a.stuck_after,
        },
        activity_interval: a.activity_interval,
        max_demos_per_user: a.max_demos_per_user,
        max_running_demos: a.max_running_demos,
        namespace: "default".into(),
        public_url: a.public_url.clone(),
        share_domain: a.share_domain.clone(),
        session_key: match &a.session_key.clone().or(match &a.session_key_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--session-key-file: reading {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        }) {
            Some(k) if k.len() < 32 => bail!("--session-key: use at least 32 characters"),
            Some(k) => Some(k.as_bytes().to_vec()),
            None => None,
        },
        dev_login: false,
        sso: showroom::web::Sso {
            trusted_proxies: a.trusted_proxies.clone(),
            admin_group: a.admin_group.clone(),
        },
        leader: None,
        notice_lead: a.notice_lead,
        notice_webhook: a.notice_webhook.clone(),
        brand: std::sync::Arc::new(brand(a)?),
    })
}

fn brand(a: &ServeArgs) -> anyhow::Result<showroom::domain::brand::Brand> {
    let logo = match &a.brand_logo {
        Some(f) => Some((
            f.display().to_string(),
            std::fs::read(f).with_context(|| format!("--brand-logo: reading {}", f.display()))?,
        )),
        None => None,
    };
    showroom::domain::brand::Brand::new(
        a.brand_name.as_deref(),
        a.brand_color.as_deref(),
        logo.as_ref().map(|(n, b)| (n.as_str(), b.clone())),
    )
    .map_err(|e| anyhow::anyhow!("--{}", e.to_string().replacen(' ', "-", 1)))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    if let Err(e) = run(cli.command).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Crd => {
            print!("{}", showroom::cluster::crd::crd_yaml());
            Ok(())
        }
        Command::Templates {
            command: TemplatesCommand::Check { dir },
        } => {
            let cat = load_catalogue(&dir)?;
            println!(
                "{} template(s) OK: {}",
                cat.templates.len(),
                cat.templates.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Templates {
            command: TemplatesCommand::Configmap { dir },
        } => {
            load_catalogue(&dir)?;
            print!("{}", snapshots_configmap(&dir)?);
            Ok(())
        }
        Command::Users {
            command: UsersCommand::HashPassword,
        } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.len() < 8 {
                bail!("the password must have at least 8 characters");
            }
            println!("{}", showroom::domain::share::hash_secret(password));
            Ok(())
        }
        Command::Users {
            command: UsersCommand::NewToken { name, role },
        } => {
            let role = match role.as_str() {
                "sales" => Role::Sales,
                "admin" => Role::Admin,
                other => bail!("--role: {other:?} is not sales or admin"),
            };
            let token = new_token();
            let entry = UserEntry {
                name,
                role,
                token_sha256: vec![hash_token(&token)],
                max_demos: None,
                password_argon2: None,
            };
            // The token goes to the terminal only; stdout (the entry) can be appended to
            // users.yaml without it.
            eprintln!(
                "token for {} (give it to them; it is not stored anywhere): {token}",
                entry.name
            );
            print!(
                "{}",
                serde_saphyr::to_string(&vec![entry]).context("rendering the entry")?
            );
            Ok(())
        }
        Command::Serve {
            listen,
            users,
            leader_election,
            namespace,
            lease_name,
            lease_seconds,
            args,
        } => {
            let catalogue = Arc::new(load_catalogue(&args.snapshots)?);
            let text = std::fs::read_to_string(&users)
                .with_context(|| format!("reading users file {}", users.display()))?;
            let users = Arc::new(
                Users::parse(&users.display().to_string(), &text).map_err(anyhow::Error::msg)?,
            );
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (KUBECONFIG or in-cluster)")?;
            let mut cfg = config(listen, &args)?;
            cfg.namespace = namespace.clone();
            if leader_election {
                if lease_seconds < 3 {
                    bail!("--lease-seconds: use at least 3");
                }
                let identity = std::env::var("POD_NAME")
                    .or_else(|_| std::env::var("HOSTNAME"))
                    .unwrap_or_else(|_| {
                        format!(
                            "showroom-{}",
                            &uuid::Uuid::new_v4().simple().to_string()[..8]
                        )
                    });
                cfg.leader = Some(showroom::cluster::leader::LeaderConfig {
                    namespace,
                    lease_name,
                    identity,
                    duration_secs: lease_seconds,
                    grace_secs: (lease_seconds / 3).max(1),
                });
            }
            let running = app::start(client, catalogue, users, cfg).await?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
            Ok(())
        }
        Command::Dev {
            port,
            state_dir,
            boot_delay,
            args,
        } => dev(port, state_dir, boot_delay, args).await,
        Command::Sweep {
            instance,
            dry_run,
            snapshots,
            orphan_grace,
            stuck_after,
        } => {
            let catalogue = load_catalogue(&snapshots)?;
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (KUBECONFIG or in-cluster)")?;
            let opts = SweepOptions {
                orphan_grace,
                stuck_after,
            };
            let (demos, namespaces) = sweeper::list_all(&client, &instance)
                .await
                .context("listing demos and namespaces")?;
            let plan = sweeper::plan(
                &demos,
                &namespaces,
                &instance,
                &catalogue,
                &opts,
                chrono::Utc::now(),
            );
            print!("{}", plan.table());
            if dry_run {
                println!("(dry run: nothing changed)");
                return Ok(());
            }
            let results =
                sweeper::execute(&client, &instance, &plan, &opts, &Metrics::default()).await;
            let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
            for (it, r) in &failed {
                eprintln!(
                    "failed: {} {} {}: {}",
                    it.kind,
                    it.name,
                    it.action,
                    r.as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                );
            }
            if !failed.is_empty() {
                bail!("{} of {} sweep step(s) failed", failed.len(), results.len());
            }
            Ok(())
        }
    }
}

async fn dev(
    port: u16,
    state_dir: PathBuf,
    boot_delay: std::time::Duration,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let catalogue = Arc::new(load_catalogue(&args.snapshots)?);
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let state_dir = state_dir.canonicalize()?;
    // Every template's snapshot is in the simulated registry, restoring in a second and
    // booting in --boot-delay.
    let snapshots = Arc::new(showroom::sim::agent::Snapshots::default());
    snapshots.publish_catalogue(&catalogue, std::time::Duration::from_secs(1), boot_delay);
    let sim = SimCluster::start(SimOptions {
        snapshots,
        state_dir: Some(state_dir.clone()),
        ..Default::default()
    })
    .await?;
    let client = sim.client().await?;
    app::install_crd(&client).await?;
    let (sales_token, admin_token) = (new_token(), new_token());
    let users = Users::from_entries(vec![
        UserEntry {
            name: "sales".into(),
            role: Role::Sales,
            token_sha256: vec![hash_token(&sales_token)],
            max_demos: None,
            password_argon2: None,
        },
        UserEntry {
            name: "admin".into(),
            role: Role::Admin,
            token_sha256: vec![hash_token(&admin_token)],
            max_demos: None,
            password_argon2: None,
        },
    ])
    .map_err(anyhow::Error::msg)?;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cfg = config(listen, &args)?;
    cfg.dev_login = true;
    // The share-link proxy reaches the simulated demos' apps where the agent serves them.
    if let Some(agent) = &sim.agent {
        let apps = agent.apps.clone();
        cfg.upstream_override = Some(Arc::new(move |host: &str, port: u16| {
            apps.resolve(host, port)
        }));
    }
    let running = app::start(client, catalogue, Arc::new(users), cfg).await?;
    // dev.json and the printed URL say "ready to use": a start before the caches have
    // synced is refused (503, "showroom is not ready"), so they wait for that first.
    let synced = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !running.state.ready.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    if synced.is_err() {
        eprintln!(
            "showroom is not ready yet: {} (see /readyz)",
            running.state.ready.why()
        );
    }
    let url = format!("http://{}", running.addr);
    let info = serde_json::json!({
        "url": url, "salesToken": sales_token, "adminToken": admin_token,
        "kubeconfig": sim.kubeconfig_path().display().to_string(),
    });
    let dev_json = state_dir.join("dev.json");
    std::fs::write(&dev_json, serde_json::to_string_pretty(&info)?)
        .with_context(|| format!("writing {}", dev_json.display()))?;
    println!("showroom dev is running on a simulated cluster");
    println!("  url:         {url}");
    println!("  sales token: {sales_token}");
    println!("  admin token: {admin_token}");
    println!(
        "  kubeconfig:  {}   (kubectl --kubeconfig {} get demos)",
        sim.kubeconfig_path().display(),
        sim.kubeconfig_path().display()
    );
    println!("  written to:  {}", dev_json.display());
    println!("open {url} in a browser and sign in with one click, or");
    println!("try: curl -s -H 'Authorization: Bearer {sales_token}' {url}/api/v1/templates");
    shutdown_signal().await;
    running.stop().await;
    drop(sim);
    Ok(())
}
