/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the names and contents of editors' scratch files look like: pure functions. */
#include <string.h>

#include "editors.h"

bool editors_backup_of(const char *name, size_t len, const char *base, size_t blen)
{
	if (len <= blen || memcmp(name, base, blen) != 0)
		return false;
	const char *rest = name + blen;
	size_t rlen = len - blen;
	if (rlen == 1 && rest[0] == '~')
		return true;
	if (rlen < 4 || rest[0] != '.' || rest[1] != '~' || rest[rlen - 1] != '~')
		return false;
	for (size_t i = 2; i < rlen - 1; i++)
		if (rest[i] < '0' || rest[i] > '9')
			return false;
	return true;
}

bool editors_scratch_name(const char *name, bool (*exists)(void *ctx, const char *name, size_t len),
			  void *ctx)
{
	size_t len = strlen(name);

	if (len >= 2 && name[len - 1] == '~') {
		for (size_t b = len - 1; b > 0; b--)
			if (editors_backup_of(name, len, name, b) && exists(ctx, name, b))
				return true;
	}
	if (len >= 3 && name[0] == '#' && name[len - 1] == '#' && exists(ctx, name + 1, len - 2))
		return true;
	/* vim's swap files: .x.swp, then .swo, .swn ... down to .saa when those are taken. */
	if (len >= 6 && name[0] == '.' && name[len - 4] == '.' && name[len - 3] == 's' &&
	    name[len - 2] >= 'a' && name[len - 2] <= 'w' && name[len - 1] >= 'a' &&
	    name[len - 1] <= 'z' && exists(ctx, name + 1, len - 5))
		return true;
	return false;
}

bool editors_is_swap(const char *buf, size_t len)
{
	return len >= 6 && (memcmp(buf, "b0VIM ", 6) == 0 || memcmp(buf, "b0nano", 6) == 0);
}
