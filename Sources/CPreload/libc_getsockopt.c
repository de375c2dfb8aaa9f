/* The client library asks libc's getsockopt (the preload library has its own, past itself). */
#include "nfqr_internal.h"

nfqr_getsockopt_fn nfqr_real_getsockopt(void) { return getsockopt; }
