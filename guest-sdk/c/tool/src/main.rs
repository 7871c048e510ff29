//! `wasp-c`: the command line of the wasp C SDK's build tool.
//!
//! ```text
//! wasp-c bindgen OUTDIR [--wit DIR]          # C bindings of wasp:spi/plugin
//! wasp-c componentize CORE.wasm -o OUT.wasm  # core module -> plugin component
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Build tool of the wasp C SDK.
#[derive(Parser)]
#[command(name = "wasp-c", version)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Generates the C bindings of `wasp:spi/plugin` (plugin.h, plugin.c,
    /// plugin_component_type.o) into OUTDIR.
    Bindgen {
        /// Where to write the files.
        out_dir: PathBuf,
        /// The WIT directory (default: this repository's `wit/`).
        #[arg(long)]
        wit: Option<PathBuf>,
    },
    /// Wraps a wasm32-wasi core module with the WASI command adapter into a
    /// wasp plugin component.
    Componentize {
        /// The core module.
        core: PathBuf,
        /// The component to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Bindgen { out_dir, wit } => {
            let wit = wit.unwrap_or_else(wasp_c_tool::default_wit_dir);
            for path in wasp_c_tool::write_bindings(&wit, &out_dir)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Componentize { core, output } => {
            let bytes =
                std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
            let component = wasp_c_tool::componentize(&bytes)?;
            std::fs::write(&output, component)
                .with_context(|| format!("writing {}", output.display()))?;
        }
    }
    Ok(())
}
