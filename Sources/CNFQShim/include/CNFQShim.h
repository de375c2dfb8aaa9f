// Umbrella header of the nfq-redirect C shim: the few things Swift cannot do well
// (attribute walks over kernel-filled buffers, recvmmsg and its GNU-only structs, calls the
// Glibc module does not export). Every symbol is prefixed `nfqr_`.
#ifndef NFQR_CNFQSHIM_H
#define NFQR_CNFQSHIM_H

#include "nfqr_netlink.h"
#include "nfqr_io.h"
#include "nfqr_lookup.h"

#endif
