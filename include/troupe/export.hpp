#pragma once
// Symbols of libtroupe_api that programs may use; everything else in the library is hidden.
#if defined(TROUPE_API_BUILDING)
#define TROUPE_API __attribute__((visibility("default")))
#else
#define TROUPE_API
#endif
