// goproxy: the smallest transparent TCP proxy a Go programmer writes, built static
// (CGO_ENABLED=0) by the proxies suite. It learns each connection's original destination
// with a raw getsockopt(SO_ORIGINAL_DST) system call, as v2ray, sing-box and Clash do:
// no libc, so no preload library can see the call; only the kernel can answer it.
//
//	goproxy -listen :12348      (one dual-stack socket: IPv4 clients arrive IPv4-mapped)
//
// Each accepted connection is logged as "relay <client> -> <original destination>" and
// relayed there; a failed getsockopt is logged as "origdst <client>: <error>".
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

const soOriginalDst = 80 // SO_ORIGINAL_DST == IP6T_SO_ORIGINAL_DST

type listeners []string

func (l *listeners) String() string     { return strings.Join(*l, ",") }
func (l *listeners) Set(v string) error { *l = append(*l, v); return nil }

// originalDestination asks the kernel the way golang.org/x/sys based proxies do: a 20-byte
// IPv6Mreq for IPv4 (sockaddr_in in its first 16 bytes), a 32-byte IPv6MTUInfo for IPv6.
func originalDestination(conn *net.TCPConn) (string, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return "", err
	}
	ipv6 := conn.RemoteAddr().(*net.TCPAddr).IP.To4() == nil
	var answer string
	var callErr error
	err = raw.Control(func(fd uintptr) {
		if !ipv6 {
			mreq, e := syscall.GetsockoptIPv6Mreq(int(fd), syscall.IPPROTO_IP, soOriginalDst)
			if e != nil {
				callErr = e
				return
			}
			b := mreq.Multiaddr // sockaddr_in: family(2) port(2, network order) addr(4)
			port := int(b[2])<<8 | int(b[3])
			answer = net.JoinHostPort(net.IP(b[4:8]).String(), fmt.Sprint(port))
			return
		}
		var info syscall.IPv6MTUInfo
		size := uint32(unsafe.Sizeof(info))
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_IPV6, soOriginalDst,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			callErr = e
			return
		}
		sa := info.Addr // sockaddr_in6
		port := int(sa.Port&0xff)<<8 | int(sa.Port>>8)
		answer = net.JoinHostPort(net.IP(sa.Addr[:]).String(), fmt.Sprint(port))
	})
	if err != nil {
		return "", err
	}
	return answer, callErr
}

func relay(client *net.TCPConn) {
	defer client.Close()
	target, err := originalDestination(client)
	if err != nil {
		log.Printf("origdst %s: %v", client.RemoteAddr(), err)
		return
	}
	log.Printf("relay %s -> %s", client.RemoteAddr(), target)
	upstream, err := net.Dial("tcp", target)
	if err != nil {
		log.Printf("dial %s: %v", target, err)
		return
	}
	defer upstream.Close()
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		io.Copy(upstream, client)
		upstream.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(client, upstream)
	client.CloseWrite()
	done.Wait()
}

func main() {
	var addresses listeners
	flag.Var(&addresses, "listen", "address:port to accept redirected connections on (repeatable)")
	flag.Parse()
	log.SetOutput(os.Stderr)
	log.SetFlags(0)
	for _, address := range addresses {
		listener, err := net.Listen("tcp", address)
		if err != nil {
			log.Fatalf("listen %s: %v", address, err)
		}
		go func(l net.Listener) {
			for {
				conn, err := l.Accept()
				if err != nil {
					log.Fatalf("accept: %v", err)
				}
				go relay(conn.(*net.TCPConn))
			}
		}(listener)
	}
	log.Printf("ready")
	select {}
}
