package pki

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"log/slog"
)

// ErrBadPassword: the password does not decrypt the key (or the key is
// corrupt; the two cannot be told apart).
var ErrBadPassword = errors.New("pki: wrong password or corrupt encrypted key")

// maxPBKDF2Iterations bounds the work an encrypted key file can demand.
const maxPBKDF2Iterations = 10_000_000

// OIDs for PKCS#5 v2.1 (RFC 8018) encrypted PKCS#8 keys.
var (
	oidPBES2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA1  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA25 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACWithSHA38 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACWithSHA51 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// RFC 5958 §3 EncryptedPrivateKeyInfo; RFC 8018 §A.4 PBES2-params, §A.2
// PBKDF2-params.
type encryptedPrivateKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

type pbes2Params struct {
	KDF        pkix.AlgorithmIdentifier
	Encryption pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

// ParseKeyWithPassword decodes a private key that may be encrypted: PKCS#8
// "ENCRYPTED PRIVATE KEY" with PBES2 (PBKDF2 + AES-CBC, what `openssl
// genpkey -aes256` and `openssl pkcs8 -topk8 -v2 aes256` write) or legacy
// RFC 1423 "Proc-Type: 4,ENCRYPTED" PEM (`openssl genrsa -aes128
// -traditional`, the form some appliances export). Plain keys are accepted
// too, so the password can be optional in configuration.
func ParseKeyWithPassword(data, password []byte) (crypto.Signer, error) {
	if !isPEM(data) {
		k, err := ParseKey(data)
		if err == nil {
			return k, nil
		}
		der, derr := decryptPKCS8(data, password)
		if derr != nil {
			return nil, err
		}
		return parseDERKey(der, pemPKCS8)
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, ErrNoKey
		}
		switch b.Type {
		case pemEncrypted:
			der, err := decryptPKCS8(b.Bytes, password)
			if err != nil {
				return nil, err
			}
			return parseDERKey(der, pemPKCS8)
		case pemPKCS8, pemPKCS1, pemSEC1:
			if _, ok := b.Headers[pemLegacyHeader]; !ok {
				return parseDERKey(b.Bytes, b.Type)
			}
			// RFC 1423 encryption is weak (MD5 key derivation) and
			// deprecated; it is read, never written, for keys exported by
			// other systems.
			//lint:ignore SA1019 reading legacy keys only, see above
			der, err := x509.DecryptPEMBlock(b, password)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrBadPassword, err)
			}
			return parseDERKey(der, b.Type)
		}
	}
}

// Password is a private-key passphrase. It redacts itself in logs and
// fmt output so option structs holding it can be logged.
type Password []byte

// LogValue implements slog.LogValuer.
func (Password) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// String implements fmt.Stringer.
func (Password) String() string { return "REDACTED" }

// GoString implements fmt.GoStringer (%#v).
func (Password) GoString() string { return "REDACTED" }

// LoadKeyPairWithPassword is LoadKeyPair for a key that may be encrypted.
func LoadKeyPairWithPassword(certPath, keyPath string, password Password) (tls.Certificate, error) {
	certs, err := LoadCertificates(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := LoadKeyWithPassword(keyPath, password)
	if err != nil {
		return tls.Certificate{}, err
	}
	return KeyPair(certs, key, certPath, keyPath)
}

// LoadKeyWithPassword is LoadKey for keys that may be encrypted.
func LoadKeyWithPassword(path string, password []byte) (crypto.Signer, error) {
	data, err := readFileCapped(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKeyWithPassword(data, password)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// decryptPKCS8 decrypts an EncryptedPrivateKeyInfo (RFC 5958 §3) protected
// with PBES2 (RFC 8018 §6.2).
func decryptPKCS8(der, password []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, errors.New("pki: malformed encrypted private key")
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("%w: encryption %v (only PBES2)", ErrUnsupportedKey, info.Algorithm.Algorithm)
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, errors.New("pki: malformed PBES2 parameters")
	}
	if !params.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("%w: key derivation %v (only PBKDF2)", ErrUnsupportedKey, params.KDF.Algorithm)
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &kdf); err != nil {
		return nil, errors.New("pki: malformed PBKDF2 parameters")
	}
	if kdf.Iterations < 1 || kdf.Iterations > maxPBKDF2Iterations {
		return nil, fmt.Errorf("pki: PBKDF2 iteration count %d out of range", kdf.Iterations)
	}
	var keyLen int
	switch {
	case params.Encryption.Algorithm.Equal(oidAES128CBC):
		keyLen = 16
	case params.Encryption.Algorithm.Equal(oidAES192CBC):
		keyLen = 24
	case params.Encryption.Algorithm.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return nil, fmt.Errorf("%w: cipher %v (only AES-CBC)", ErrUnsupportedKey, params.Encryption.Algorithm)
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, errors.New("pki: PBKDF2 key length does not match the cipher")
	}
	var prf func() hash.Hash
	switch {
	case len(kdf.PRF.Algorithm) == 0, kdf.PRF.Algorithm.Equal(oidHMACWithSHA1):
		prf = sha1.New // RFC 8018 §A.2 default
	case kdf.PRF.Algorithm.Equal(oidHMACWithSHA25):
		prf = sha256.New
	case kdf.PRF.Algorithm.Equal(oidHMACWithSHA38):
		prf = sha512.New384
	case kdf.PRF.Algorithm.Equal(oidHMACWithSHA51):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("%w: PBKDF2 PRF %v", ErrUnsupportedKey, kdf.PRF.Algorithm)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.Encryption.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
		return nil, errors.New("pki: malformed AES-CBC IV")
	}
	if len(info.Data) == 0 || len(info.Data)%aes.BlockSize != 0 {
		return nil, ErrBadPassword
	}
	key, err := pbkdf2.Key(prf, string(password), kdf.Salt, kdf.Iterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("pki: PBKDF2: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	out := make([]byte, len(info.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, info.Data)
	// PKCS#7 padding (RFC 8018 §6.1.1 step 4).
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || pad > len(out) {
		return nil, ErrBadPassword
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, ErrBadPassword
		}
	}
	out = out[:len(out)-pad]
	if _, err := x509.ParsePKCS8PrivateKey(out); err != nil {
		return nil, ErrBadPassword
	}
	return out, nil
}
