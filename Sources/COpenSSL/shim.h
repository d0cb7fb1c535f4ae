// OpenSSL's TLS and X.509 headers for CairnHTTP, with small C functions for what Swift cannot call or write:
// macros, and the ALPN callback (a C function pointer).
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/evp.h>

static inline long cairn_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long cairn_SSL_CTX_set_mode(SSL_CTX *ctx) {
    // Idle connections free their record buffers; partial writes and a moved buffer suit a growing output array.
    return SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}
static inline void cairn_SSL_CTX_set_options(SSL_CTX *ctx) {
    // A client closing without close_notify is an end of input, not an error; nobody renegotiates.
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
}
static inline void cairn_SSL_CTX_set_session_cache(SSL_CTX *ctx, long entries) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, entries);
}
static inline int cairn_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline int cairn_SSL_session_reused(const SSL *ssl) { return (int)SSL_session_reused(ssl); }
static inline int cairn_EVP_PKEY_CTX_set_ec_curve(EVP_PKEY_CTX *ctx, int nid) {
    return EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, nid);
}

/// Picks h2 when the client offers it, else http/1.1; with neither offered the handshake goes on without ALPN.
static int cairn_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                             unsigned int inlen, void *arg) {
    static const unsigned char preferred[] = "\x02h2\x08http/1.1";
    (void)ssl; (void)arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, preferred, sizeof preferred - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}
static inline void cairn_SSL_CTX_select_http_alpn(SSL_CTX *ctx) { SSL_CTX_set_alpn_select_cb(ctx, cairn_alpn_select, NULL); }

/// OpenSSL's name for the TLS 1.2 cipher suite with the IANA (and Go) name `standard`, or NULL.
static inline const char *cairn_openssl_cipher_name(const char *standard) {
    SSL_CTX *all = SSL_CTX_new(TLS_method());
    if (all == NULL) return NULL;
    const char *found = NULL;
    if (SSL_CTX_set_cipher_list(all, "ALL:COMPLEMENTOFALL:@SECLEVEL=0") == 1) {
        STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(all);
        for (int i = 0; i < sk_SSL_CIPHER_num(ciphers) && found == NULL; i++) {
            const SSL_CIPHER *cipher = sk_SSL_CIPHER_value(ciphers, i);
            const char *name = SSL_CIPHER_standard_name(cipher);
            if (name != NULL && strcmp(name, standard) == 0) found = SSL_CIPHER_get_name(cipher);
        }
    }
    SSL_CTX_free(all);
    return found;
}

/// The verify callback of every context that checks certificates. A CRL is used as etcd uses it, for the serial
/// numbers it revokes: one that has expired, or none from a certificate's issuer, does not fail the handshake (a
/// revoked certificate still does). With `--peer-cert-allowed-cn`, the leaf certificate's first CN must equal the
/// NUL-terminated name stored as the SSL's app data (ex_data index 0); a mismatch fails with a bad_certificate alert.
static int cairn_verify(int ok, X509_STORE_CTX *store) {
    if (!ok) {
        int error = X509_STORE_CTX_get_error(store);
        if (error != X509_V_ERR_CRL_HAS_EXPIRED && error != X509_V_ERR_UNABLE_TO_GET_CRL) return 0;
        X509_STORE_CTX_set_error(store, X509_V_OK);
    }
    if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    const char *allowed = ssl == NULL ? NULL : SSL_get_ex_data(ssl, 0);
    if (allowed == NULL) return 1;
    char name[256];
    X509 *certificate = X509_STORE_CTX_get_current_cert(store);
    int length = certificate == NULL ? -1 : X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, name, sizeof name);
    if (length < 0 || (size_t)length != strlen(allowed) || strcmp(name, allowed) != 0) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    return 1;
}
static inline void cairn_SSL_CTX_set_verify(SSL_CTX *ctx, int mode) { SSL_CTX_set_verify(ctx, mode, cairn_verify); }
/// Requires the peer's certificate CN to be `allowed` (kept alive by the caller as long as the SSL).
static inline void cairn_SSL_require_cn(SSL *ssl, const char *allowed) { SSL_set_ex_data(ssl, 0, (void *)allowed); }
