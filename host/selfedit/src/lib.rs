//! overseer-selfedit: agents that change their own kind. It owns source snapshots, patches and
//! diffs, the `syn` analysis, the builder (cargo for Rust, the componentizers for Python and
//! JavaScript), the edit workflow — apply, build, push through the kernel's pipeline — and the
//! working copies that follow the active version. It serves the `source` interface to agents
//! granted it, and attaches to the kernel only through what the kernel offers: its lifecycle
//! events, its capability registry, its pipeline and its store.

pub mod analysis;
pub mod architect;
pub mod builder;
mod builds;
mod bundled;
mod config;
mod edit;
mod error;
pub mod isolation;
pub mod patch;
mod script;
pub mod snapshot;
mod source;
mod workcopy;

use std::sync::Arc;

use overseer_kernel::{Kernel, Listener};

pub use builds::Built;
pub use bundled::manifests as bundled_manifests;
pub use config::BuildConfig;
pub use edit::{EditRequest, compiler_errors};
pub use error::{Error, Result};
pub use isolation::Isolation;
pub use snapshot::Snapshot;

/// Self-editing of one daemon's agents. Cheap to clone.
#[derive(Clone)]
pub struct SelfEdit {
    inner: Arc<Inner>,
}

struct Inner {
    kernel: Kernel,
    config: BuildConfig,
    /// Keeps the working copies' lifecycle listener alive (the kernel holds it weakly).
    _working_copies: Arc<dyn Listener>,
}

impl SelfEdit {
    /// Attach self-editing to `kernel`: working copies follow its activations, and the
    /// `source` interface is served to agents granted it.
    pub fn new(kernel: Kernel, config: BuildConfig) -> SelfEdit {
        let inner = Arc::new_cyclic(|weak| Inner {
            kernel: kernel.clone(),
            config,
            _working_copies: Arc::new(workcopy::WorkingCopies::new(weak.clone())),
        });
        kernel.hooks.listen(&inner._working_copies);
        kernel
            .capabilities
            .serve_source(Arc::new(source::SourceProvider::new(Arc::downgrade(
                &inner,
            ))));
        SelfEdit { inner }
    }

    fn from_inner(inner: Arc<Inner>) -> SelfEdit {
        SelfEdit { inner }
    }

    /// The kernel this attaches to.
    pub fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    /// Where and how agents are built.
    pub fn config(&self) -> &BuildConfig {
        &self.inner.config
    }
}
