// Umbrella header of the libc calls the Swift Glibc module does not export, or exports only
// through GNU-only structs: recvmmsg, eventfd, setns, pipe2 (nfqr_io.h); epoll, accept4,
// SO_PEERCRED and thread names for the lookup server's thread (nfqr_server.h). Every symbol
// is prefixed `nfqr_`. Swift code reaches them through the SystemCalls layer where it can.
#ifndef NFQR_CSYSTEMCALLS_H
#define NFQR_CSYSTEMCALLS_H

#include "nfqr_io.h"
#include "nfqr_server.h"

#endif
