//! Starts a throwaway real control plane (etcd, kube-apiserver, kube-controller-manager
//! from `$SHOWROOM_REALKUBE`) and keeps it up until Ctrl-C, printing its kubeconfig:
//! for trying showroom or kubectl against a real API server by hand.
//!
//! ```sh
//! SHOWROOM_REALKUBE=/path/to/unpacked/realkube cargo run --example realkube
//! ```

use showroom::sim::realkube::{self, ControlPlane};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(bin) = realkube::binaries_from_env().map_err(anyhow::Error::msg)? else {
        anyhow::bail!(
            "set {} to the directory with the unpacked binaries",
            realkube::ENV
        );
    };
    let cp = ControlPlane::start(&bin).await?;
    println!("control plane up in {:.1} s", cp.startup.as_secs_f64());
    println!("export KUBECONFIG={}", cp.kubeconfig_path.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
