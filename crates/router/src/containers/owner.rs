//! Attached containers as an owner of IPAM addresses and bridge ports (see
//! `crate::owners`): the registry's entries, and every operation in flight.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::Containers;
use crate::datapath::expose::EXPOSE_OWNER;
use crate::intents::Op;
use crate::owners::{Claim, Owned, Owner};

/// The containers of the attach pipeline, with the intents of attach, detach, expose
/// and hide (an operation in flight owns every address of its owner).
pub struct ContainerOwner(pub Arc<Containers>);

impl Owner for ContainerOwner {
    fn kind(&self) -> &'static str {
        "containers"
    }

    fn owned(&self) -> BoxFuture<'_, Owned> {
        Box::pin(async move {
            let mut out = Owned::default();
            // Intents before the registry: an attach that ends meanwhile is in the
            // registry by the time its intent goes.
            for (_, i) in self.0.intents.pending() {
                match i.op {
                    Op::Attach | Op::Detach => {
                        out.addrs.push(Claim::all(&i.id));
                        out.ports.push(weft_datapath::attach::host_veth_name_for(
                            i.ns_inode, &i.ifname,
                        ));
                    }
                    Op::Expose | Op::Hide => out.addrs.push(Claim::all(EXPOSE_OWNER)),
                }
            }
            let reg = self.0.registry.lock().await;
            for (id, e) in reg.iter() {
                out.addrs.extend(
                    e.addrs
                        .iter()
                        .filter_map(|a| a.parse::<ipnet::Ipv4Net>().ok())
                        .map(|a| Claim::addr(id, a.addr())),
                );
                out.ports.push(weft_datapath::attach::host_veth_name_for(
                    e.ns_inode, &e.ifname,
                ));
            }
            out
        })
    }
}
