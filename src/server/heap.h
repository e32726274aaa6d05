/*
 * A binary min-heap of timers, intrusive: users embed a heap_node in their
 * own struct (recover it with container_of arithmetic) and the node records
 * its position, so re-keying or removing any node costs O(log n).
 *
 * Lifetime rules:
 *  - a node must be initialised with heap_node_init (or HEAP_NODE_INIT)
 *    before its first heap_set: a node with idx == HEAP_NONE is "not in a
 *    heap";
 *  - a node belongs to at most one heap at a time, and stays valid while it
 *    is in it: heap_remove it before freeing its struct;
 *  - the heap stores pointers only and never frees nodes.
 * Nodes with equal keys come out in no particular order.  Not thread-safe.
 */
#ifndef ISSUN_SERVER_HEAP_H
#define ISSUN_SERVER_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct heap_node {
  uint64_t key; /* the deadline; read it, change it only through heap_set */
  size_t idx;   /* position in the heap, HEAP_NONE when not in a heap */
} heap_node;

#define HEAP_NONE ((size_t)-1)
#define HEAP_NODE_INIT                                                                             \
  { 0, HEAP_NONE }

typedef struct heap {
  heap_node **v;
  size_t len, cap;
} heap;

/* Marks n as in no heap. */
static inline void heap_node_init(heap_node *n) {
  n->key = 0;
  n->idx = HEAP_NONE;
}

/* 1 when n is in a heap. */
static inline int heap_node_active(const heap_node *n) {
  return n->idx != HEAP_NONE;
}

/* An empty heap; allocates nothing. */
void heap_init(heap *h);

/* Frees the array, not the nodes, and leaves h empty.  Nodes still in the
 * heap are not touched (they may be freed already): their idx is stale, so
 * heap_node_init them before any reuse. */
void heap_free(heap *h);

/* Inserts n with `key`, or, when n is already in h, changes its key and
 * moves it.  Returns 0, or -1 when growing the array failed (only possible
 * for an insert; n is then still not in the heap). */
int heap_set(heap *h, heap_node *n, uint64_t key);

/* Removes n from h; a no-op when n is in no heap.  n->idx becomes HEAP_NONE. */
void heap_remove(heap *h, heap_node *n);

/* The node with the smallest key, or NULL when h is empty.  Not removed. */
heap_node *heap_min(const heap *h);

#endif
