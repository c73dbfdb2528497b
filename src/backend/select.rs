//! Choosing where to run: `--backend auto|cpu|gpu` and `--adapter NAME`.

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, KernelChoice};
use crate::error::InputError;
use anyhow::Result;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The best real GPU, else the CPU backend (a software adapter such as lavapipe only when asked for).
    Auto,
    /// The CPU reference backend.
    Cpu,
    /// Any wgpu adapter, software ones included; an error if there is none.
    Gpu,
}

/// Work to run on whichever backend was chosen (a generic closure, spelled as a trait).
pub trait OnBackend {
    type Output;
    fn run<B: Backend + 'static>(self, be: &B) -> Result<Self::Output>;
}

/// `--kernels` with `--backend cpu`: the CPU backend runs no GPU kernels, so naming a set is a mistake.
pub fn check_kernels(choice: BackendChoice, kernels: KernelChoice) -> Result<(), InputError> {
    if choice == BackendChoice::Cpu && kernels != KernelChoice::Auto {
        return Err(InputError::value(format!(
            "--kernels {}: the CPU backend runs no GPU kernels (use --backend gpu)",
            kernels.name()
        )));
    }
    Ok(())
}

/// Builds the backend `choice` asks for, with the GPU kernel set `kernels`, and runs `job` on it.
/// `notice` receives one-line messages such as "no GPU adapter found; training on the CPU backend".
pub fn run_on<J: OnBackend>(
    choice: BackendChoice,
    adapter: Option<&str>,
    kernels: KernelChoice,
    notice: &mut dyn FnMut(&str),
    job: J,
) -> Result<J::Output> {
    check_kernels(choice, kernels)?;
    match choice {
        BackendChoice::Cpu => job.run(&CpuBackend::new()),
        #[cfg(feature = "gpu")]
        BackendChoice::Gpu => {
            let gpu = crate::backend::gpu::GpuBackend::open(adapter, true, kernels)?;
            software_hint(&gpu, notice);
            job.run(&gpu)
        }
        #[cfg(feature = "gpu")]
        BackendChoice::Auto => match crate::backend::gpu::GpuBackend::open(adapter, false, kernels)
        {
            Ok(gpu) => {
                software_hint(&gpu, notice);
                job.run(&gpu)
            }
            // An adapter or a kernel set the user named and that cannot be had is an error, not a
            // reason to fall back.
            Err(e) if adapter.is_some() || kernels != KernelChoice::Auto => Err(e),
            Err(e) => {
                notice(&format!("{e:#}; using the CPU backend"));
                job.run(&CpuBackend::new())
            }
        },
        #[cfg(not(feature = "gpu"))]
        BackendChoice::Gpu => {
            let _ = adapter;
            Err(InputError::value(
                "--backend gpu: this build of wgtrain has no GPU backend (feature `gpu` is off)",
            )
            .into())
        }
        #[cfg(not(feature = "gpu"))]
        BackendChoice::Auto => match adapter {
            Some(name) => Err(InputError::value(format!(
                "--adapter {name}: this build of wgtrain has no GPU backend (feature `gpu` is off)"
            ))
            .into()),
            None => {
                notice("this build has no GPU backend; using the CPU backend");
                job.run(&CpuBackend::new())
            }
        },
    }
}

/// A software adapter (lavapipe, SwiftShader, WARP) runs the kernels on the CPU, one invocation at a
/// time per thread: correct, but far slower than the CPU backend's blocked GEMMs. Say so, since nothing
/// else would tell the user why the GPU run crawls.
#[cfg(feature = "gpu")]
fn software_hint(gpu: &crate::backend::gpu::GpuBackend, notice: &mut dyn FnMut(&str)) {
    let info = gpu.adapter_info();
    if info.device_type == wgpu::DeviceType::Cpu {
        notice(&format!(
            "{} is a software adapter (it emulates a GPU on the CPU): expect it to be far slower than --backend cpu (`wgtrain bench` measures both here)",
            info.name
        ));
    }
}
