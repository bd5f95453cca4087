"""Throwaway certificates for the TLS tests, and the TLS side of the
harness's own store clients.

  CertAuthority  a CA made with openssl in a directory (P-256, about 30 ms
                 per certificate); issue() signs a server or client
                 certificate with any subject, SANs and validity (an
                 expired one too: `openssl ca -startdate/-enddate` works
                 with OpenSSL 3.0, whose `x509 -req` has no start date).
  Certs          everything the TLS tests use, made on first use in one
                 temp dir: ca, server (SAN IP:127.0.0.1, DNS:localhost),
                 client (subject /O=cfgfs, no CN: etcd's gateway refuses a
                 client certificate with a CN once auth is on), client_cn,
                 expired (a server certificate that expired in 2020),
                 wrong_name (SANs that are not this host), and ca2 with
                 server2/client2 for rotation.  Private keys are mode 0600.
  ServerTLS      how a store server serves TLS (its certificate and key;
                 client_ca: clients must present a certificate from that CA)
                 plus the ClientTLS the harness's own clients use with it.
  ClientTLS      CA / client certificate / key / verification for the
                 harness's clients (urllib + ssl); the files are read each
                 time a context is made, so a client made after a rotation
                 uses the new ones.
  replace_file() write a file's new content next to it and rename() it
                 over the old one (how certificates are rotated on disk).
"""

import datetime
import functools
import os
import shutil
import ssl
import subprocess
import tempfile

__all__ = ["CertAuthority", "CertPair", "Certs", "ClientTLS", "ServerTLS", "replace_file",
           "openssl_missing_reason", "SAN_LOCAL"]

SAN_LOCAL = "IP:127.0.0.1,DNS:localhost"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

_CA_CONF = """\
[ca]
default_ca = tca
[tca]
database = %(dir)s/index.txt
new_certs_dir = %(dir)s/issued
serial = %(dir)s/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[anything]
commonName = optional
organizationName = optional
"""


def openssl_missing_reason():
    """None if openssl can be run, else why not (a reason to skip)."""
    if shutil.which("openssl") is None:
        return "openssl not found in PATH (apt-get install openssl)"
    return None


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed (status %d): %s"
                           % (" ".join(args), r.returncode, r.stderr.strip()[-800:]))
    return r


def _asn1_time(t):
    return t.strftime("%Y%m%d%H%M%SZ")


def replace_file(src, dst):
    """Give dst the content of src the way a careful deployment tool does:
    write dst.new, then rename() it over dst (a reader sees the old file or
    the new one, never a half-written one).  Keeps the mode of src."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    shutil.copymode(src, tmp)
    os.rename(tmp, dst)


class CertPair:
    """A certificate, its private key, and the certificate of the CA that
    issued it (paths)."""

    def __init__(self, cert, key, ca):
        self.cert, self.key, self.ca = cert, key, ca

    def __repr__(self):
        return "CertPair(%r, %r, ca=%r)" % (self.cert, self.key, self.ca)

    def subject(self):
        return _openssl(["x509", "-in", self.cert, "-noout", "-subject"],
                        os.path.dirname(self.cert)).stdout.strip()


class CertAuthority:
    """A self-signed CA in directory (created): ca.crt, ca.key, and the
    certificates it issues, NAME.crt / NAME.key."""

    def __init__(self, directory, name="cfgfs-test-ca", days=2):
        self.dir = directory
        self.name = name
        os.makedirs(os.path.join(directory, "issued"), exist_ok=True)
        with open(os.path.join(directory, "index.txt"), "w"):
            pass
        with open(os.path.join(directory, "serial"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(directory, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF % {"dir": directory})
        self.cert = os.path.join(directory, "ca.crt")
        self.key = os.path.join(directory, "ca.key")
        _openssl(["req", "-x509"] + _EC + ["-keyout", self.key, "-out", self.cert,
                                          "-days", str(days), "-subj", "/CN=" + name], directory)
        os.chmod(self.key, 0o600)

    def issue(self, name, subject="/O=cfgfs", san=None, not_before=None, not_after=None):
        """Sign a new key pair: NAME.crt / NAME.key in the CA's directory.
        san e.g. SAN_LOCAL; validity by default from an hour ago for two days
        (not_before/not_after: datetimes in UTC)."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        not_before = not_before or now - datetime.timedelta(hours=1)
        not_after = not_after or now + datetime.timedelta(days=2)
        crt = os.path.join(self.dir, name + ".crt")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        req = ["req", "-new"] + _EC + ["-keyout", key, "-out", csr, "-subj", subject]
        if san:
            req += ["-addext", "subjectAltName=" + san]
        _openssl(req, self.dir)
        os.chmod(key, 0o600)
        _openssl(["ca", "-batch", "-config", self.conf, "-cert", self.cert, "-keyfile", self.key,
                  "-in", csr, "-out", crt, "-notext",
                  "-startdate", _asn1_time(not_before), "-enddate", _asn1_time(not_after)],
                 self.dir)
        os.unlink(csr)
        return CertPair(crt, key, self.cert)


class Certs:
    """The certificates of one test class, made on first use, in a temp dir
    that close() removes."""

    def __init__(self):
        reason = openssl_missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.dir = tempfile.mkdtemp(prefix="cfgfs-certs-")

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @functools.cached_property
    def ca(self):
        return CertAuthority(self.path("ca"), "cfgfs-test-ca")

    @functools.cached_property
    def server(self):
        return self.ca.issue("server", "/CN=localhost", SAN_LOCAL)

    @functools.cached_property
    def client(self):
        """A client certificate without a CN (subject /O=cfgfs)."""
        return self.ca.issue("client", "/O=cfgfs")

    @functools.cached_property
    def client_cn(self):
        return self.ca.issue("client-cn", "/O=cfgfs/CN=cfgfs-client")

    @functools.cached_property
    def expired(self):
        """A server certificate (right names, right CA) valid only on 2020-01-01."""
        return self.ca.issue("server-expired", "/CN=localhost", SAN_LOCAL,
                             datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
                             datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc))

    WRONG_NAME = "server.dc1.consul"

    @functools.cached_property
    def wrong_name(self):
        """A server certificate for the name WRONG_NAME only (no IP SAN):
        wrong for 127.0.0.1 and localhost; right with -o tls_server_name."""
        return self.ca.issue("server-wrong-name", "/CN=" + self.WRONG_NAME,
                             "DNS:" + self.WRONG_NAME)

    @functools.cached_property
    def ca2(self):
        """A second, unrelated CA (the wrong CA; the CA rotated to)."""
        return CertAuthority(self.path("ca2"), "cfgfs-test-ca-2")

    @functools.cached_property
    def server2(self):
        return self.ca2.issue("server", "/CN=localhost", SAN_LOCAL)

    @functools.cached_property
    def client2(self):
        return self.ca2.issue("client", "/O=cfgfs")

    def live_dir(self, name):
        """A (new, empty) directory for files that get rotated."""
        d = self.path("live", name)
        os.makedirs(d, exist_ok=True)
        return d


class ClientTLS:
    """TLS settings of a harness client (not of cfgfs): ca verifies the
    server (verify=False: no verification at all; check_hostname=False:
    the chain only), cert/key are presented if the server asks."""

    def __init__(self, ca=None, cert=None, key=None, verify=True, check_hostname=True):
        self.ca, self.cert, self.key = ca, cert, key
        self.verify, self.check_hostname = verify, check_hostname

    @classmethod
    def of(cls, client_pair, ca=None, **kw):
        """ClientTLS presenting client_pair (a CertPair), verifying the server
        with ca (default: the CA that issued client_pair)."""
        return cls(ca or client_pair.ca, client_pair.cert, client_pair.key, **kw)

    def context(self):
        """A new ssl.SSLContext (reads the files now)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx.check_hostname = self.check_hostname
            if self.ca:
                ctx.load_verify_locations(cafile=self.ca)
            else:
                ctx.load_default_certs()
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def __repr__(self):
        return "ClientTLS(ca=%r, cert=%r, key=%r, verify=%r, check_hostname=%r)" % (
            self.ca, self.cert, self.key, self.verify, self.check_hostname)


class ServerTLS:
    """How a store server serves TLS: cert and key (paths, read at every
    start, so a restart picks up rotated files); client_ca: only clients
    presenting a certificate issued by this CA are served (etcd:
    --trusted-ca-file + --client-cert-auth; Consul: ca_file +
    verify_incoming_https).  harness: the ClientTLS of the harness's own
    clients of this server (default: verify with client_ca or nothing,
    present nothing)."""

    def __init__(self, cert, key, client_ca=None, harness=None):
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.harness = harness or ClientTLS(ca=client_ca)

    @classmethod
    def of(cls, server_pair, client_pair=None, harness=None):
        """Serve server_pair; require client certificates from client_pair's
        CA if client_pair is given, and let the harness present it."""
        if harness is None:
            harness = ClientTLS.of(client_pair, server_pair.ca) if client_pair \
                else ClientTLS(ca=server_pair.ca)
        return cls(server_pair.cert, server_pair.key,
                   client_pair.ca if client_pair else None, harness)

    def __repr__(self):
        return "ServerTLS(cert=%r, key=%r, client_ca=%r, harness=%r)" % (
            self.cert, self.key, self.client_ca, self.harness)
