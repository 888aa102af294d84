//! `bones land`: your branch's new commits onto trunk.

use clap::Args;
use serde_json::json;

use super::{exit, report};
use crate::swarm::Swarm;
use crate::swarm::user::UserLandError;

#[derive(Debug, Args)]
pub struct LandArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LandArgs) -> u8 {
    let (paths, runtime) = match super::workspace_and_runtime() {
        Ok(found) => found,
        Err(code) => return code,
    };
    let result = runtime.block_on(async move {
        let hub = Swarm::connect(paths).await.map_err(UserLandError::from)?;
        hub.land_user().await
    });
    let landed = match result {
        Ok(landed) => landed,
        Err(err) => {
            report(&err);
            return match err {
                UserLandError::Conflict { .. } => exit::CONFLICT,
                _ => exit::FAILURE,
            };
        }
    };
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
        println!("{}", json!(landed));
    } else {
        println!("{}", landed.trunk);
    }
    exit::OK
}
