//! Firewall-mark services (`-f MARK`): one device per mark.
//!
//! The kernel's IPVS matches `skb->mark`, which a TUN reader never sees. So
//! each fwmark service gets its own TUN device (`<dev>m<MARK>`), steered by a
//! `fwmark MARK lookup <table+MARK>` policy rule, and its workers run the
//! pipeline with that mark: the device a packet came from says its mark.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;

use super::{spawn_workers, Registry};
use crate::dataplane::device::{Device, DeviceConfig, DeviceKind};
use crate::dataplane::pipeline::{Methods, Pipeline};
use crate::dataplane::xmit_tunnel::{TunnelConfig, TunnelRoutes, TunnelTx};
use crate::director::Director;
use crate::netcfg::steer::{Steering, MAX_FWMARK};

/// What every mark device is opened and run with.
#[derive(Debug)]
pub struct Ctx {
    /// The director the workers read (weak: the director owns the hooks).
    pub director: Weak<Director>,
    /// Worker counters, for `tunvs drops`.
    pub registry: Registry,
    /// Name of the main device; mark devices are `<dev>m<MARK>`.
    pub base_dev: String,
    /// Queues per device.
    pub queues: usize,
    /// Virtio header and offloads.
    pub offload: bool,
    /// Methods the pipeline carries.
    pub methods: Methods,
    /// Routes toward tunnel real servers, shared with the main device's workers.
    pub routes: Arc<TunnelRoutes>,
    /// The main device's tunnel configuration (same GUE hash seed).
    pub tun_cfg: TunnelConfig,
}

#[derive(Debug)]
struct MarkDev {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// The devices of the firewall-mark services.
#[derive(Debug, Default)]
pub struct FwmarkDevices {
    ctx: OnceLock<Ctx>,
    devs: Mutex<HashMap<(u32, bool), MarkDev>>,
}

impl FwmarkDevices {
    /// Give the manager what it needs to start workers (once the director exists).
    pub fn init(&self, ctx: Ctx) {
        let _ = self.ctx.set(ctx);
    }

    /// The device name for `mark` (at most 15 bytes).
    pub fn dev_name(base: &str, mark: u32) -> Result<String, String> {
        let name = format!("{base}m{mark}");
        if name.len() > 15 {
            return Err(format!(
                "device name {name} for firewall mark {mark} is longer than 15 bytes: use a shorter --dev"
            ));
        }
        Ok(name)
    }

    /// A fwmark service was added: open its device, steer the mark into it
    /// (or print the commands with `--no-routes`), start its workers.
    pub fn add(
        &self,
        mark: u32,
        v6: bool,
        steering: &mut Steering,
        apply: bool,
    ) -> Result<(), String> {
        if mark == 0 || mark > MAX_FWMARK {
            return Err(format!(
                "firewall mark {mark}: tunvs steers marks 1 to {MAX_FWMARK} (each gets routing table --table + MARK)"
            ));
        }
        let ctx = self
            .ctx
            .get()
            .ok_or("the daemon is not ready for firewall-mark services")?;
        let director = ctx
            .director
            .upgrade()
            .ok_or("the daemon is shutting down")?;
        let name = Self::dev_name(&ctx.base_dev, mark)?;
        let mut dev = Device::open(&DeviceConfig {
            name: name.clone(),
            kind: DeviceKind::Tun,
            queues: ctx.queues,
            offload: ctx.offload,
        })
        .map_err(|e| format!("cannot open device {name} for firewall mark {mark}: {e}"))?;
        if apply {
            steering
                .add_fwmark(mark, v6, dev.ifindex, &dev.name)
                .map_err(|e| format!("cannot steer firewall mark {mark} into {name}: {e}"))?;
        } else {
            println!("tunvs: --no-routes: for firewall mark {mark} run:");
            for line in steering.describe_fwmark(mark, v6, &dev.name) {
                println!("  {line}");
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let queues = std::mem::take(&mut dev.queues);
        let workers = spawn_workers(
            &format!("tunvs-m{mark}"),
            queues,
            dev.vnet,
            || {
                Pipeline::new(director.clone(), ctx.methods)
                    .with_fwmark(mark)
                    .with_tunnel(TunnelTx::new(ctx.routes.clone(), ctx.tun_cfg))
            },
            &stop,
            &ctx.registry,
        );
        let workers = match workers {
            Ok(w) => w,
            Err(e) => {
                if apply {
                    let _ = steering.del_fwmark(mark, v6);
                }
                return Err(e);
            }
        };
        self.devs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((mark, v6), MarkDev { stop, workers });
        Ok(())
    }

    /// A fwmark service was removed: unsteer, stop its workers, close its device.
    pub fn remove(&self, mark: u32, v6: bool, steering: &mut Steering, apply: bool) {
        let dev = self
            .devs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(mark, v6));
        if apply {
            if let Err(e) = steering.del_fwmark(mark, v6) {
                eprintln!("tunvs: cannot remove the steering of firewall mark {mark}: {e}");
            }
        }
        if let Some(d) = dev {
            Self::stop(d);
        }
    }

    fn stop(d: MarkDev) {
        d.stop.store(true, Relaxed);
        for w in d.workers {
            let _ = w.join();
        }
        // The queues close with the workers; a non-persistent device goes with them.
    }

    /// Stop every mark device (shutdown).
    pub fn stop_all(&self) {
        let devs: Vec<MarkDev> = self
            .devs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, d)| d)
            .collect();
        for d in devs {
            Self::stop(d);
        }
    }
}
