//! Finding and choosing a wgpu adapter, and describing the ones there are.

use crate::error::InputError;
use anyhow::Result;

/// The backends wgtrain asks wgpu for (those it is built with): natively Vulkan, Metal and DX12, in a
/// browser its WebGPU.
fn backends() -> wgpu::Backends {
    if cfg!(target_arch = "wasm32") {
        wgpu::Backends::BROWSER_WEBGPU
    } else {
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
    }
}

pub fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// What `wgtrain devices` prints of one adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// Whether `--backend auto` would train on it.
    pub auto_choice: bool,
}

/// Preference among adapters: real GPUs first, CPU emulation (lavapipe, WARP) last.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn is_software(t: wgpu::DeviceType) -> bool {
    t == wgpu::DeviceType::Cpu
}

/// Picks an adapter: the best-ranked one whose name contains `filter` (case-insensitive);
/// software adapters only if `allow_software`.
pub fn choose_adapter(
    instance: &wgpu::Instance,
    filter: Option<&str>,
    allow_software: bool,
) -> Result<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends()));
    if adapters.is_empty() {
        return Err(InputError::value(
            "no GPU adapter found (wgpu sees no Vulkan, Metal or DX12 device; on Linux install a Vulkan driver, e.g. apt-get install mesa-vulkan-drivers libvulkan1)",
        )
        .into());
    }
    if let Some(f) = filter {
        let f = f.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&f));
        if adapters.is_empty() {
            return Err(InputError::value(format!(
                "--adapter {f}: no adapter matches (there are: {})",
                names.join(", ")
            ))
            .into());
        }
    }
    adapters.sort_by_key(|a| rank(a.get_info().device_type));
    let best = adapters.remove(0);
    let info = best.get_info();
    if is_software(info.device_type) && !allow_software && filter.is_none() {
        return Err(InputError::value(format!(
            "no real GPU adapter found, only the software adapter {} (--backend gpu uses it)",
            info.name
        ))
        .into());
    }
    Ok(best)
}

/// Every adapter wgpu sees, marking the one `--backend auto` would use.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    let auto = choose_adapter(&instance, None, false)
        .ok()
        .map(|a| a.get_info());
    let mut out: Vec<AdapterSummary> = pollster::block_on(instance.enumerate_adapters(backends()))
        .into_iter()
        .map(|a| {
            let i = a.get_info();
            let auto_choice = auto
                .as_ref()
                .is_some_and(|x| x.name == i.name && x.backend == i.backend);
            AdapterSummary {
                name: i.name.clone(),
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                auto_choice,
            }
        })
        .collect();
    out.sort_by_key(|a| !a.auto_choice);
    out
}
