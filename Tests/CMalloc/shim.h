// glibc's malloc statistics (mallinfo2), which Swift's Glibc module leaves out; tests measure allocations with it.
#include <malloc.h>
