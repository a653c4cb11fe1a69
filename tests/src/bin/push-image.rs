//! `push-image REGISTRY REPOSITORY TAG [--crashloop]`: what CI does on every commit, for the
//! demo and for trying the plugin by hand — pushes a small distinct image and prints the digest
//! the registry serves for it.

use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// `host:port` of the registry (plain HTTP).
    registry: String,
    /// Repository path inside it, e.g. `acme/web`.
    repository: String,
    /// The tag: a commit's full hash, as CI would tag it.
    tag: String,
    /// Push a build that the fake kubelet makes crash-loop.
    #[arg(long)]
    crashloop: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let digest = if args.crashloop {
        kubectl_release_tests::push_crashing_image(&args.registry, &args.repository, &args.tag)
            .await?
    } else {
        kubectl_release_tests::push_image(&args.registry, &args.repository, &args.tag).await?
    };
    println!("{digest}");
    Ok(())
}
