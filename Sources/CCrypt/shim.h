// libxcrypt (Debian's libcrypt-dev) for CairnServer's password hashes: bcrypt, as etcd stores them.
#include <crypt.h>
