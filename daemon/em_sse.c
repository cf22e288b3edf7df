/* SPDX-License-Identifier: MIT */
#include "em_sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "em_log.h"
#include "em_query.h"

#define RING_EVENTS 1024            /* recent events kept for streams that follow live */
#define RING_BYTES (16u << 20)      /* and at most this much text */
#define DB_PAGE 32                  /* events per database read while catching up */
#define DB_WINDOW 4096              /* seqs one read looks through: a filter that matches nothing
                                     * costs each call this much, never the whole table */
#define BATCH_BYTES (64u << 10)     /* text a stream takes from the ring at a time */

typedef struct event {
  int64_t seq;
  char *topic;
  char *text;                       /* the SSE block: id, event, data lines, blank line */
  size_t len;
} event_t;

typedef struct stream {
  struct stream *prev, *next;       /* the hub's list, under its lock */
  em_sse_t *hub;
  struct MHD_Connection *conn;
  int64_t cursor;                   /* the last seq sent or passed over */
  bool from_db;                     /* catching up from the database */
  bool suspended;                   /* waiting for an event; under the hub's lock */
  char *run;                        /* the run (and the runs below it), or NULL for every run */
  char *filter;                     /* run + "/": what the ring's topics are matched against */
  char *buf;                        /* text to send: buf[off..len) */
  size_t len, off, cap;
  uint64_t last_sent_ms;
} stream_t;

struct em_sse {
  uv_mutex_t lock;
  event_t ring[RING_EVENTS];
  size_t head, count, bytes;        /* ring[head] is the oldest */
  int64_t evicted;                  /* the highest seq that left the ring */
  stream_t *streams;
  int nstreams;
  bool closing;
  em_db_t *db;                      /* the HTTP thread's */
};

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* ---------------------------------------------------------------- text */

static bool reserve(stream_t *s, size_t more)
{
  if (s->len + more <= s->cap)
    return true;
  size_t cap = s->cap ? s->cap : 4096;
  while (cap < s->len + more)
    cap *= 2;
  char *grown = realloc(s->buf, cap);
  if (!grown)
    return false;
  s->buf = grown;
  s->cap = cap;
  return true;
}

static bool append(stream_t *s, const char *text, size_t n)
{
  if (!reserve(s, n))
    return false;
  memcpy(s->buf + s->len, text, n);
  s->len += n;
  return true;
}

/* The SSE block of one message; every line of the payload is a data line (ours have
 * none, but a newline inside would otherwise end the event early). Caller frees. */
static char *format_event(int64_t seq, const char *topic, const char *payload, size_t *len)
{
  size_t kind = strcspn(topic, "/"), n = strlen(payload), lines = 1;
  for (const char *p = payload; (p = strpbrk(p, "\r\n")) != NULL; p++)
    lines++;
  size_t cap = 64 + kind + n + lines * 6;
  char *t = malloc(cap);
  if (!t)
    return NULL;
  size_t used = (size_t)snprintf(t, cap, "id: %lld\nevent: %.*s\n", (long long)seq, (int)kind, topic);
  for (const char *p = payload; *p || p == payload;) {
    size_t line = strcspn(p, "\r\n");
    used += (size_t)snprintf(t + used, cap - used, "data: %.*s\n", (int)line, p);
    p += line;
    if (!*p)
      break;
    p++;
  }
  used += (size_t)snprintf(t + used, cap - used, "\n");
  *len = used;
  return t;
}

/* Whether a stream wants topic kind/run/: its run or one below it. */
static bool wanted(const stream_t *s, const char *topic)
{
  if (!s->filter)
    return true;
  const char *run = strchr(topic, '/');
  return run && strncmp(run + 1, s->filter, strlen(s->filter)) == 0;
}

/* ---------------------------------------------------------------- the ring */

static void evict_oldest(em_sse_t *h)
{
  event_t *e = &h->ring[h->head];
  if (e->seq > h->evicted) /* a watermark: it never goes back */
    h->evicted = e->seq;
  h->bytes -= e->len;
  free(e->topic);
  free(e->text);
  memset(e, 0, sizeof(*e));
  h->head = (h->head + 1) % RING_EVENTS;
  h->count--;
}

static void resume_all(em_sse_t *h)
{
  for (stream_t *s = h->streams; s; s = s->next) {
    if (s->suspended) {
      s->suspended = false;
      MHD_resume_connection(s->conn);
    }
  }
}

void em_sse_publish(em_sse_t *h, int64_t seq, const char *topic, const char *payload)
{
  event_t e = {.seq = seq, .topic = strdup(topic)};
  e.text = e.topic ? format_event(seq, topic, payload, &e.len) : NULL;
  uv_mutex_lock(&h->lock);
  if (!e.text) {
    if (seq > h->evicted)
      h->evicted = seq; /* lost here: streams before it read the database instead */
    free(e.topic);
  } else {
    while (h->count && (h->count == RING_EVENTS || h->bytes + e.len > RING_BYTES))
      evict_oldest(h);
    h->ring[(h->head + h->count) % RING_EVENTS] = e;
    h->count++;
    h->bytes += e.len;
  }
  resume_all(h);
  uv_mutex_unlock(&h->lock);
}

void em_sse_tick(em_sse_t *h)
{
  uv_mutex_lock(&h->lock);
  resume_all(h);
  uv_mutex_unlock(&h->lock);
}

/* The ring's index (0 = oldest) of the first event after seq; count when none. */
static size_t first_after(const em_sse_t *h, int64_t seq)
{
  size_t lo = 0, hi = h->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (h->ring[(h->head + mid) % RING_EVENTS].seq <= seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Takes what the ring holds after the stream's cursor. Under the lock. false on OOM. */
static bool take_from_ring(em_sse_t *h, stream_t *s)
{
  for (size_t i = first_after(h, s->cursor); i < h->count && s->len < BATCH_BYTES; i++) {
    const event_t *e = &h->ring[(h->head + i) % RING_EVENTS];
    if (wanted(s, e->topic) && !append(s, e->text, e->len))
      return false;
    s->cursor = e->seq;
  }
  return true;
}

/* ---------------------------------------------------------------- the database */

static int take_row(void *ctx, int64_t seq, const char *topic, const char *json)
{
  stream_t *s = ctx;
  if (json) {
    size_t n;
    char *text = format_event(seq, topic, json, &n);
    bool ok = text && append(s, text, n);
    free(text);
    if (!ok)
      return -1;
  }
  s->cursor = seq;
  return 0;
}

/* One page after the cursor, looking through at most DB_WINDOW seqs: the stream follows
 * the ring once it has read up to what was committed when it looked. */
static bool take_from_db(stream_t *s)
{
  int64_t before = s->cursor, last = em_query_last_seq(s->hub->db);
  em_since_t q = {.after = s->cursor, .upto = last < s->cursor + DB_WINDOW ? last : s->cursor + DB_WINDOW,
                  .run = s->run, .limit = DB_PAGE};
  int rows = last < 0 ? -1 : q.upto <= q.after ? 0 : em_query_since(s->hub->db, &q, take_row, s);
  if (rows < 0) {
    EM_WARN("http: events: database error catching up after seq %lld: the stream ends (its client resumes "
            "with Last-Event-ID)", (long long)before);
    return false;
  }
  if (rows < DB_PAGE) { /* the window is read through */
    s->cursor = q.upto > s->cursor ? q.upto : s->cursor;
    s->from_db = q.upto < last;
  }
  if (s->len == 0 && s->from_db)
    return append(s, ": catching up\n\n", 16); /* a few bytes, so the next window waits its turn */
  return true;
}

/* ---------------------------------------------------------------- streams */

/* From the ring, under its lock: what is there after the cursor, a keepalive when one is
 * due, or nothing, and then the stream is suspended until a publish, tick or close. */
static bool take_live(em_sse_t *h, stream_t *s)
{
  bool ok = take_from_ring(h, s);
  if (ok && s->len == 0 && now_ms() - s->last_sent_ms >= EM_SSE_KEEPALIVE_MS) {
    ok = append(s, ": keepalive\n\n", 13);
  } else if (ok && s->len == 0) {
    s->suspended = true;
    MHD_suspend_connection(s->conn);
  }
  return ok;
}

/* Fills the stream's text, or suspends it until there is some. false: end it. Never
 * leaves it empty and awake: libmicrohttpd would call again at once. */
static bool refill(stream_t *s)
{
  em_sse_t *h = s->hub;
  s->len = s->off = 0;
  for (int round = 0;; round++) {
    if (s->from_db && !take_from_db(s))
      return false;
    if (s->len || s->from_db)
      return true; /* events, or a line saying it is still catching up */
    uv_mutex_lock(&h->lock);
    bool ok = !h->closing, behind = s->cursor < h->evicted;
    if (ok && behind && round == 0) {
      s->from_db = true; /* it fell behind the ring: what it lost is in the database */
      uv_mutex_unlock(&h->lock);
      continue;
    }
    ok = ok && take_live(h, s); /* read up to the last commit already: the ring has the rest */
    uv_mutex_unlock(&h->lock);
    return ok;
  }
}

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
  (void)pos;
  stream_t *s = cls;
  if (s->off == s->len) {
    if (!refill(s))
      return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->off == s->len)
      return 0; /* suspended */
  }
  size_t n = s->len - s->off < max ? s->len - s->off : max;
  memcpy(buf, s->buf + s->off, n);
  s->off += n;
  s->last_sent_ms = now_ms();
  return (ssize_t)n;
}

static void discard(stream_t *s)
{
  if (s) {
    free(s->run);
    free(s->filter);
    free(s->buf);
  }
  free(s);
}

static void free_stream(void *cls)
{
  stream_t *s = cls;
  em_sse_t *h = s->hub;
  uv_mutex_lock(&h->lock);
  if (s->prev)
    s->prev->next = s->next;
  else
    h->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  h->nstreams--;
  uv_mutex_unlock(&h->lock);
  discard(s);
}

static stream_t *new_stream(em_sse_t *h, struct MHD_Connection *conn, bool has_after, int64_t after,
                            const char *run)
{
  stream_t *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  *s = (stream_t){.hub = h, .conn = conn, .cursor = has_after ? after : em_query_last_seq(h->db),
                  .from_db = has_after, .last_sent_ms = now_ms()};
  bool ok = s->cursor >= 0 && append(s, "retry: 2000\n\n", 13); /* first bytes: the client knows it is connected */
  if (ok && run && (ok = (s->filter = malloc(strlen(run) + 2)) != NULL && (s->run = strdup(run)) != NULL))
    sprintf(s->filter, "%s/", run);
  if (!ok) {
    discard(s);
    return NULL;
  }
  return s;
}

struct MHD_Response *em_sse_open(em_sse_t *h, struct MHD_Connection *conn, bool has_after, int64_t after,
                                 const char *run)
{
  uv_mutex_lock(&h->lock);
  bool room = h->nstreams < EM_SSE_MAX_STREAMS && !h->closing;
  if (room)
    h->nstreams++; /* held for this stream */
  uv_mutex_unlock(&h->lock);
  stream_t *s = room ? new_stream(h, conn, has_after, after, run) : NULL;
  struct MHD_Response *r = s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, read_stream, s,
                                                                 free_stream) : NULL;
  uv_mutex_lock(&h->lock);
  if (r) {
    s->next = h->streams;
    if (h->streams)
      h->streams->prev = s;
    h->streams = s;
  } else if (room) {
    h->nstreams--;
  }
  uv_mutex_unlock(&h->lock);
  if (!r)
    discard(s);
  return r;
}

em_sse_t *em_sse_new(em_db_t *db)
{
  em_sse_t *h = calloc(1, sizeof(*h));
  if (!h || uv_mutex_init(&h->lock) != 0) {
    free(h);
    return NULL;
  }
  h->db = db;
  h->evicted = em_query_last_seq(db); /* nothing committed before this ring existed is in it */
  if (h->evicted < 0)
    h->evicted = INT64_MAX;           /* unknown: every stream reads the database first */
  return h;
}

int em_sse_count(em_sse_t *h)
{
  uv_mutex_lock(&h->lock);
  int n = h->nstreams;
  uv_mutex_unlock(&h->lock);
  return n;
}

void em_sse_close_all(em_sse_t *h)
{
  uv_mutex_lock(&h->lock);
  h->closing = true;
  resume_all(h);
  uv_mutex_unlock(&h->lock);
  for (int i = 0; i < 100 && em_sse_count(h) > 0; i++)
    uv_sleep(10);
}

void em_sse_free(em_sse_t *h)
{
  if (!h)
    return;
  while (h->count)
    evict_oldest(h);
  uv_mutex_destroy(&h->lock);
  free(h);
}
