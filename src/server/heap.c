/*
 * Binary min-heap in an array: children of i at 2i+1 and 2i+2, and every
 * node's idx kept equal to its position.  See heap.h.
 */
#include "server/heap.h"

#include <assert.h>
#include <stdlib.h>

#define HEAP_MIN_CAP ((size_t)16)

static inline void place(heap *h, size_t i, heap_node *n) {
  h->v[i] = n;
  n->idx = i;
}

/* Moves the node at i towards the root while its parent's key is larger. */
static void sift_up(heap *h, size_t i) {
  heap_node *n = h->v[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h->v[parent]->key <= n->key)
      break;
    place(h, i, h->v[parent]);
    i = parent;
  }
  place(h, i, n);
}

/* Moves the node at i towards the leaves while a child's key is smaller. */
static void sift_down(heap *h, size_t i) {
  heap_node *n = h->v[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= h->len)
      break;
    if (child + 1 < h->len && h->v[child + 1]->key < h->v[child]->key)
      child++;
    if (n->key <= h->v[child]->key)
      break;
    place(h, i, h->v[child]);
    i = child;
  }
  place(h, i, n);
}

void heap_init(heap *h) {
  h->v = NULL;
  h->len = 0;
  h->cap = 0;
}

void heap_free(heap *h) {
  free(h->v);
  heap_init(h);
}

int heap_set(heap *h, heap_node *n, uint64_t key) {
  if (n->idx != HEAP_NONE) {
    assert(n->idx < h->len && h->v[n->idx] == n);
    uint64_t old = n->key;
    n->key = key;
    if (key < old)
      sift_up(h, n->idx);
    else if (key > old)
      sift_down(h, n->idx);
    return 0;
  }
  if (h->len == h->cap) {
    size_t cap = h->cap == 0 ? HEAP_MIN_CAP : h->cap;
    if (h->cap != 0) {
      if (cap > SIZE_MAX / 2 / sizeof(*h->v))
        return -1;
      cap *= 2;
    }
    heap_node **v = realloc(h->v, cap * sizeof(*v));
    if (v == NULL)
      return -1;
    h->v = v;
    h->cap = cap;
  }
  n->key = key;
  place(h, h->len, n);
  h->len++;
  sift_up(h, h->len - 1);
  return 0;
}

void heap_remove(heap *h, heap_node *n) {
  if (n->idx == HEAP_NONE)
    return;
  size_t i = n->idx;
  assert(i < h->len && h->v[i] == n);
  heap_node *last = h->v[--h->len];
  n->idx = HEAP_NONE;
  if (last == n)
    return;
  /* The last node fills the gap, then goes whichever way its key says. */
  place(h, i, last);
  if (i > 0 && h->v[(i - 1) / 2]->key > last->key)
    sift_up(h, i);
  else
    sift_down(h, i);
}

heap_node *heap_min(const heap *h) {
  return h->len > 0 ? h->v[0] : NULL;
}
