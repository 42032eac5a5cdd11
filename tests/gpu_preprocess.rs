// SPDX-License-Identifier: MPL-2.0
//! Our CUDA kernels (feature `cuda`): the preprocessing and the model's
//! epilogues and attention compile with NVRTC wherever libnvrtc loads (no GPU needed), and on
//! a GPU the preprocessing equals the CPU path for every format and size.

#![cfg(feature = "cuda")]

mod common;

use candle_core::{DType, Device};
use common::{max_abs_diff_slices, noise};
use gstradio::cuda::{compile, nvrtc_version};
use gstradio::model::parse_device;
use gstradio::model::{ATTENTION_KERNELS, EPILOGUE_KERNELS};
use gstradio::preprocess::cuda::{GpuPreprocessor, PREPROCESS_KERNELS};
use gstradio::preprocess::{
    Colorimetry, CpuPreprocessor, FrameLayout, Normalization, PixelFormat, YuvMatrix,
};

/// The architectures CI compiles for: A100, L4/L40, H100/H200.
const ARCHITECTURES: [(i32, i32); 3] = [(8, 0), (8, 9), (9, 0)];

#[test]
fn kernels_compile_to_cubin_for_every_architecture_without_warnings() {
    let (major, minor) = nvrtc_version().expect("libnvrtc loads");
    eprintln!("NVRTC {major}.{minor}");
    for (source, arch) in [&PREPROCESS_KERNELS, &EPILOGUE_KERNELS, &ATTENTION_KERNELS]
        .into_iter()
        .flat_map(|s| ARCHITECTURES.map(|a| (s, a)))
    {
        let sm = format!("{} for sm_{}{}", source.file, arch.0, arch.1);
        let compiled = compile(source, arch).expect("NVRTC compiles the kernels");
        assert!(
            compiled.log.is_empty(),
            "{sm}: NVRTC printed:\n{}",
            compiled.log
        );
        assert!(
            compiled.cubin.starts_with(b"\x7fELF"),
            "{sm}: not an ELF image"
        );
        for name in source.kernels {
            let found = compiled
                .cubin
                .windows(name.len())
                .any(|w| w == name.as_bytes());
            assert!(found, "{sm}: the CUBIN lacks {name}");
        }
    }
}

#[test]
fn gpu_equals_cpu_for_every_format_and_dtype() {
    let device = match parse_device("cuda:0") {
        Ok(device) => device,
        Err(err) => {
            eprintln!("SKIPPED: no usable GPU ({err}); kernel launches not checked here");
            return;
        }
    };
    let norm = Normalization {
        mean: [0.481_454_7, 0.457_827_5, 0.408_210_7],
        std: [0.268_629_5, 0.261_302_6, 0.275_777_1],
    };
    let mut gpu = GpuPreprocessor::new(&device).unwrap();
    let mut cpu = CpuPreprocessor::new();
    for format in PixelFormat::ALL {
        for ((w, h), target, aa) in [
            ((97, 131), (96, 128), true),
            ((1920, 1080), (512, 912), true),
            ((64, 48), (160, 208), false),
        ] {
            let mut layout = FrameLayout::packed(format, w, h);
            layout.colorimetry = Colorimetry {
                matrix: YuvMatrix::Bt709,
                full_range: false,
            };
            let frames = [noise(layout.min_size(), 7), noise(layout.min_size(), 9)];
            let mut expected = vec![0f32; 2 * 3 * target.0 * target.1];
            for (frame, out) in frames
                .iter()
                .zip(expected.chunks_exact_mut(3 * target.0 * target.1))
            {
                cpu.process(frame, &layout, target, aa, &norm, out).unwrap();
            }
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            // bf16 keeps 8 significant bits; normalised inputs stay below 2.2 in
            // magnitude, so 1e-2 absolute covers its rounding.
            let per_frame = 3 * target.0 * target.1;
            for (dtype, tol) in [(DType::F32, 1e-5f32), (DType::BF16, 1e-2)] {
                let mut run = |frames: &[&[u8]]| {
                    gpu.process_batch(frames, &layout, target, aa, &norm, dtype)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap()
                        .to_device(&Device::Cpu)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                };
                let worst = max_abs_diff_slices(&run(&refs), &expected);
                assert!(
                    worst <= tol,
                    "{format:?} {w}x{h} -> {target:?} {dtype:?}: off by {worst}"
                );
                // A partial batch of the second frame alone, through the
                // plan of the full batch: its one frame lands where the
                // first frame was.
                let worst = max_abs_diff_slices(&run(&refs[1..]), &expected[per_frame..]);
                assert!(
                    worst <= tol,
                    "{format:?} {w}x{h} -> {target:?} {dtype:?}, a partial batch: off by {worst}"
                );
            }
        }
    }
}
