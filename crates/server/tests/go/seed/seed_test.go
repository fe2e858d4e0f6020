// The handbook's Go program (DEV section), pointed at one endpoint or at
// every member of a cluster (RETCD_ENDPOINT, comma separated).
//
// Same steps and clientv3 calls as the handbook's TestEtcd: Put name=golang,
// Get with WithPrefix, grant a 5 s lease and put test_lease with it, grant
// another lease, KeepAlive it and put test_auto_renew_lease with it. Instead
// of blocking forever (`select {}`) it waits ~3 s counting keep-alive
// responses and then checks what it saw. It also exercises Watch, Txn and
// Delete with PrevKV.
//
// Build/run in GOPATH mode with Debian's golang-etcd-server-dev (no modules,
// no network):
//
//	GO111MODULE=off GOPATH=<tmp>:/usr/share/gocode GOCACHE=<tmp>/cache \
//	  RETCD_ENDPOINT=127.0.0.1:2379 go test -v -count=1 .
//
// (crates/server/tests/go_client.rs does exactly that.)
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// endpoints reads RETCD_ENDPOINT: one host:port, or several separated by
// commas (the handbook's program lists all three members of its cluster).
func endpoints(t *testing.T) []string {
	ep := os.Getenv("RETCD_ENDPOINT")
	if ep == "" {
		t.Fatal("RETCD_ENDPOINT is not set (want host:port of the server)")
	}
	return strings.Split(ep, ",")
}

func TestEtcd(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints(t),
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("connect to etcd failed: %v", err)
	}
	log.Println("connect to etcd success")
	defer cli.Close()

	// Put
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = cli.Put(ctx, "name", "golang")
	cancel()
	if err != nil {
		t.Fatalf("put to etcd failed: %v", err)
	}
	log.Println("put name=golang success")

	// Get with WithPrefix
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	resp, err := cli.Get(ctx, "name", clientv3.WithPrefix())
	cancel()
	if err != nil {
		t.Fatalf("get from etcd failed: %v", err)
	}
	got := map[string]string{}
	for _, ev := range resp.Kvs {
		fmt.Printf("%s : %s\n", ev.Key, ev.Value)
		got[string(ev.Key)] = string(ev.Value)
	}
	if got["name"] != "golang" {
		t.Fatalf("get name: want golang, got %q (kvs %v)", got["name"], resp.Kvs)
	}

	// A lease of 5 s and a key attached to it.
	lease := clientv3.NewLease(cli)
	leaseResp, err := lease.Grant(context.TODO(), 5)
	if err != nil {
		t.Fatalf("grant lease failed: %v", err)
	}
	log.Printf("granted lease %x ttl %d", leaseResp.ID, leaseResp.TTL)
	_, err = cli.Put(context.TODO(), "test_lease", "5s expire", clientv3.WithLease(leaseResp.ID))
	if err != nil {
		t.Fatalf("put test_lease failed: %v", err)
	}

	// Another lease, kept alive automatically.
	leaseResp2, err := lease.Grant(context.TODO(), 5)
	if err != nil {
		t.Fatalf("grant second lease failed: %v", err)
	}
	log.Printf("granted lease %x ttl %d", leaseResp2.ID, leaseResp2.TTL)
	keepCtx, keepCancel := context.WithCancel(context.Background())
	defer keepCancel()
	keepRespChan, err := lease.KeepAlive(keepCtx, leaseResp2.ID)
	if err != nil {
		t.Fatalf("keepalive failed: %v", err)
	}
	var mu sync.Mutex
	renewals := 0
	expired := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		for keepResp := range keepRespChan {
			if keepResp == nil {
				break
			}
			fmt.Println("received keepalive response:", keepResp.ID, "ttl", keepResp.TTL)
			mu.Lock()
			renewals++
			mu.Unlock()
		}
		mu.Lock()
		expired = keepCtx.Err() == nil // closed without us cancelling it
		mu.Unlock()
		fmt.Println("keepalive channel closed")
	}()
	_, err = cli.Put(context.TODO(), "test_auto_renew_lease", "auto renew", clientv3.WithLease(leaseResp2.ID))
	if err != nil {
		t.Fatalf("put test_auto_renew_lease failed: %v", err)
	}

	// Watch a prefix while a Txn and a Delete change keys under it.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wch := cli.Watch(wctx, "watch/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	// Wait until the server has created the watcher, so it sees the writes below.
	select {
	case wr, ok := <-wch:
		if !ok || wr.Err() != nil || !wr.Created {
			t.Fatalf("watch: want a created notification, got ok=%v %+v (err %v)", ok, wr, wr.Err())
		}
		log.Printf("watching prefix watch/ (watch created)")
	case <-time.After(5 * time.Second):
		t.Fatalf("watch: no created notification within 5s")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	txnResp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version("watch/a"), "=", 0)).
		Then(clientv3.OpPut("watch/a", "1")).
		Else(clientv3.OpGet("watch/a")).
		Commit()
	cancel()
	if err != nil {
		t.Fatalf("txn failed: %v", err)
	}
	if !txnResp.Succeeded {
		t.Fatalf("txn: want succeeded (watch/a did not exist), got %+v", txnResp)
	}
	log.Println("txn put watch/a=1 succeeded")

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	txnResp, err = cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Version("watch/a"), "=", 0)).
		Then(clientv3.OpPut("watch/a", "2")).
		Else(clientv3.OpGet("watch/a")).
		Commit()
	cancel()
	if err != nil {
		t.Fatalf("second txn failed: %v", err)
	}
	if txnResp.Succeeded {
		t.Fatalf("second txn: want failed compare (watch/a exists), got %+v", txnResp)
	}
	if len(txnResp.Responses) != 1 || len(txnResp.Responses[0].GetResponseRange().Kvs) != 1 ||
		string(txnResp.Responses[0].GetResponseRange().Kvs[0].Value) != "1" {
		t.Fatalf("second txn: want else-branch get of watch/a=1, got %+v", txnResp.Responses)
	}
	log.Println("second txn took the else branch: watch/a=1")

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	delResp, err := cli.Delete(ctx, "watch/a", clientv3.WithPrevKV())
	cancel()
	if err != nil {
		t.Fatalf("delete failed: %v", err)
	}
	if delResp.Deleted != 1 || len(delResp.PrevKvs) != 1 || string(delResp.PrevKvs[0].Value) != "1" {
		t.Fatalf("delete: want 1 deleted with prev kv watch/a=1, got deleted=%d prev=%v", delResp.Deleted, delResp.PrevKvs)
	}
	log.Println("deleted watch/a, prev value 1")

	// The watch must see PUT watch/a=1 then DELETE watch/a (prev 1).
	var events []*clientv3.Event
	timeout := time.After(5 * time.Second)
	for len(events) < 2 {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed early after %d events", len(events))
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error: %v", err)
			}
			for _, ev := range wr.Events {
				fmt.Printf("watch event %s %q : %q\n", ev.Type, ev.Kv.Key, ev.Kv.Value)
				events = append(events, ev)
			}
		case <-timeout:
			t.Fatalf("watch: want 2 events within 5s, got %d", len(events))
		}
	}
	if len(events) != 2 ||
		events[0].Type != clientv3.EventTypePut || string(events[0].Kv.Key) != "watch/a" || string(events[0].Kv.Value) != "1" ||
		events[1].Type != clientv3.EventTypeDelete || string(events[1].Kv.Key) != "watch/a" ||
		events[1].PrevKv == nil || string(events[1].PrevKv.Value) != "1" {
		t.Fatalf("watch: unexpected events %v", events)
	}
	wcancel()

	// Instead of `select {}`: let the keep-alive run ~3 s.
	time.Sleep(3 * time.Second)

	mu.Lock()
	n, exp := renewals, expired
	mu.Unlock()
	log.Printf("keepalive responses in ~3s: %d", n)
	if exp {
		t.Fatalf("keepalive channel closed: lease %x expired or was revoked", leaseResp2.ID)
	}
	if n < 1 {
		t.Fatalf("no keepalive response arrived in ~3s")
	}

	// Both leased keys still exist (the first lease has ~2 s left).
	for _, k := range []struct {
		key   string
		value string
		lease clientv3.LeaseID
	}{
		{"test_lease", "5s expire", leaseResp.ID},
		{"test_auto_renew_lease", "auto renew", leaseResp2.ID},
	} {
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		r, err := cli.Get(ctx, k.key)
		cancel()
		if err != nil {
			t.Fatalf("get %s failed: %v", k.key, err)
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != k.value || clientv3.LeaseID(r.Kvs[0].Lease) != k.lease {
			t.Fatalf("get %s: want %q with lease %x, got %v", k.key, k.value, k.lease, r.Kvs)
		}
		fmt.Printf("%s : %s (lease %x)\n", r.Kvs[0].Key, r.Kvs[0].Value, r.Kvs[0].Lease)
	}

	// The kept-alive lease has been renewed: its TTL is back near 5 s and
	// it carries its key.
	ttl, err := lease.TimeToLive(context.TODO(), leaseResp2.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatalf("timetolive failed: %v", err)
	}
	log.Printf("lease %x remaining ttl %d granted %d keys %q", ttl.ID, ttl.TTL, ttl.GrantedTTL, ttl.Keys)
	if ttl.TTL <= 0 || ttl.GrantedTTL != 5 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "test_auto_renew_lease" {
		t.Fatalf("timetolive: unexpected %+v", ttl)
	}

	keepCancel()
	<-done
	log.Println("done")
}
