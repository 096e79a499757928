package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test (nothing is committed).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf: a server certificate for localhost and 127.0.0.1 (client false) or
// a client certificate; serial tells reloaded certificates apart. It returns the PEM
// certificate and PKCS#8 key, and the tls.Certificate.
func (ca *testCA) issue(t *testing.T, serial int64, client bool) (certPEM, keyPEM []byte, tc tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if client {
		tmpl.Subject.CommonName = "client"
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames, tmpl.IPAddresses = nil, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	tc, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, tc
}

// testPKI is the files and client certificates of the TLS tests: a CA, the router's
// certificate signed by it, a client certificate signed by it, and a client certificate
// of another CA (the "wrong CA").
type testPKI struct {
	dir                   string
	ca                    *testCA
	certFile, keyFile     string
	caFile                string
	client, wrongCAClient tls.Certificate
	roots                 *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), ca: newTestCA(t, "parity test CA")}
	p.certFile, p.keyFile, p.caFile = filepath.Join(p.dir, "cert.pem"), filepath.Join(p.dir, "key.pem"), filepath.Join(p.dir, "ca.pem")
	p.writeServer(t, 100)
	write(t, p.caFile, p.ca.pem)
	_, _, p.client = p.ca.issue(t, 200, true)
	_, _, p.wrongCAClient = newTestCA(t, "wrong CA").issue(t, 300, true)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.ca.cert)
	return p
}

// writeServer writes a new server certificate (with serial) and key over the files.
func (p *testPKI) writeServer(t *testing.T, serial int64) {
	t.Helper()
	c, k, _ := p.ca.issue(t, serial, false)
	write(t, p.certFile, c)
	write(t, p.keyFile, k)
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
