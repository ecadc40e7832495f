// The C ABI's public header (include/swiftshm.h) as a module Swift can
// import: ShmC implements every function it declares with @_cdecl.
// Nothing is implemented in C here.
#include "swiftshm.h"
