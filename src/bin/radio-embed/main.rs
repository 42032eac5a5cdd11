// SPDX-License-Identifier: MPL-2.0
//! `radio-embed`: inspect, run and benchmark C-RADIOv4 models, check the frame
//! preprocessing, and index and search videos.

mod args;
mod model_commands;
mod pipeline;
mod preprocess_command;
mod search;
mod serve;
mod text_command;
mod video_index;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "radio-embed",
    version,
    about = "C-RADIOv4 embeddings from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what a model folder holds: layout, dimensions, token counts, parameters.
    Info(model_commands::Info),
    /// Run the model on every `*input` tensor of a safetensors file.
    Forward(model_commands::Forward),
    /// Time forwards on random input: median ms per forward and images per second.
    Bench(model_commands::Bench),
    /// Show what the model sees: resize (and antialias) an image as the element does.
    Preprocess(preprocess_command::Preprocess),
    /// Embed videos frame by frame into an index (one row per sampled frame).
    Index(video_index::Index),
    /// Find the indexed frames most similar to an image or a video frame.
    Search(search::Search),
    /// A web page over an index: search by image, text or "more like this",
    /// thumbnails, and the videos played from each moment.
    Serve(serve::Serve),
    /// Embed texts with a SigLIP text tower, in the siglip2-g adaptor's space.
    EmbedText(text_command::EmbedText),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Info(command) => command.run(),
        Command::Forward(command) => command.run(),
        Command::Bench(command) => command.run(),
        Command::Preprocess(command) => command.run(),
        Command::Index(command) => command.run(),
        Command::Search(command) => command.run(),
        Command::Serve(command) => command.run(),
        Command::EmbedText(command) => command.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("radio-embed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
