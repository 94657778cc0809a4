// Package packaging owns how mxedge ships: build-deb.sh and debian/ turn a static binary and the
// files in install/ into a reproducible .deb (deb.mk's `make deb` builds amd64 and arm64), and the
// tests here prove the binary is static and small and that the package builds byte for byte
// again, passes lintian, and installs, upgrades and purges cleanly in a throwaway root. No Go code
// ships from here.
package packaging
