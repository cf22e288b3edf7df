/* SPDX-License-Identifier: MIT */
#include "em_job.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_coverage.h"
#include "em_fs.h"
#include "em_log.h"
#include "em_scan.h"

em_job_t *em_job_new(int64_t ckpt_id, const char *path, const char *run, bool is_dir, bool has_step, int64_t step,
                     uint64_t version, const em_params_t *params)
{
  em_job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return NULL;
  *j = (em_job_t){.ckpt_id = ckpt_id, .path = strdup(path), .run = strdup(run), .is_dir = is_dir,
                  .has_step = has_step, .step = step, .version = version, .params = *params};
  if (!j->path || !j->run) {
    em_job_free(j);
    return NULL;
  }
  return j;
}

void em_job_free(em_job_t *j)
{
  if (!j)
    return;
  free(j->path);
  free(j->run);
  free(j->error);
  em_result_free(&j->result);
  em_trainer_free(&j->trainer);
  free(j);
}

static void set_state(em_job_t *j, em_state_t state, const char *msg)
{
  j->outcome = EM_JOB_STATE;
  j->state = state;
  free(j->error);
  j->error = strdup(msg);
}

/* The fingerprint still equals the one the job was queued for. */
static bool unchanged(const em_job_t *j)
{
  em_fingerprint_t fp;
  return em_scan_fingerprint(j->path, j->is_dir, &fp) == 0 && fp.version == j->version;
}

static bool gone(const em_job_t *j)
{
  struct stat st;
  return em_fs_stat(j->path, &st) == -ENOENT;
}

/* A bad trainer_state.json only loses the metrics. */
static void read_trainer(em_job_t *j)
{
  em_err_t err;
  if (j->is_dir && j->has_step)
    em_trainer_read(j->path, j->step, &j->trainer, &err);
}

void em_job_run(em_job_t *j)
{
  em_err_t err = {0};
  em_ckpt_t *ck = NULL;
  em_result_t r;
  if (!unchanged(j)) {
    if (gone(j))
      set_state(j, EM_STATE_VANISHED, "deleted before it could be read");
    else
      j->outcome = EM_JOB_CHANGED;
    return;
  }
  int rc = em_ckpt_open(j->path, &ck, &err);
  if (!rc && j->check_finite)
    rc = em_ckpt_check_finite(ck, j->cancel, &err);
  if (!rc)
    rc = em_analyze_cancellable(ck, &j->params, j->cancel, &r, &err);
  em_ckpt_destroy(&ck);
  if (rc == EM_ECANCELED) { /* the daemon is stopping: still queued, redone on restart */
    j->outcome = EM_JOB_CHANGED;
    return;
  }
  if (rc == -ESTALE || !unchanged(j)) { /* changed while read: never record what was read */
    if (!rc)
      em_result_free(&r);
    if (gone(j))
      set_state(j, EM_STATE_VANISHED, "deleted while it was being read");
    else
      j->outcome = EM_JOB_CHANGED;
    return;
  }
  if (rc == -ENOENT && gone(j))
    set_state(j, EM_STATE_VANISHED, err.msg);
  else if (rc == EM_ENONFINITE)
    set_state(j, EM_STATE_NONFINITE, err.msg);
  else if (rc == EM_EUNSUPPORTED)
    set_state(j, EM_STATE_UNSUPPORTED, err.msg);
  else if (rc)
    set_state(j, EM_STATE_FAILED, err.msg);
  else {
    char why[600];
    if (em_coverage_low(&r, why, sizeof(why)))
      EM_WARN("work: %s: %s", j->path, why);
    j->result = r;
    j->outcome = EM_JOB_DONE;
    read_trainer(j);
  }
}
