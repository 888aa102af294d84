//! `bones land`: your branch's new commits onto trunk.

use clap::Args;

use super::Failure;
use crate::swarm::Swarm;
use crate::swarm::user::UserLandError;

#[derive(Debug, Args)]
pub struct LandArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LandArgs) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    let landed = runtime.block_on(async move {
        let hub = Swarm::connect(paths).await.map_err(UserLandError::from)?;
        hub.land_user().await
    })?;
    if landed.landed.is_empty() {
        eprintln!(
            "land: trunk already has every commit of {}; trunk is {}",
            landed.branch,
            &landed.trunk[..12]
        );
    } else if landed.fast_forward {
        eprintln!(
            "land: landed {} commit(s) of {} unchanged; trunk is {}",
            landed.landed.len(),
            landed.branch,
            &landed.trunk[..12]
        );
    } else {
        eprintln!(
            "land: replayed {} commit(s) of {} onto trunk, now {}; to line your branch up: bones apply && git rebase bones/trunk",
            landed.landed.len(),
            landed.branch,
            &landed.trunk[..12]
        );
    }
    if args.json {
        super::json::print(landed);
    } else {
        println!("{}", landed.trunk);
    }
    Ok(())
}
