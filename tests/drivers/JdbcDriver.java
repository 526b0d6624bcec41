// pgjdbc in its default configuration through pgswitch. Output and
// environment as tests/drivers/common.py describes. Defaults that matter to
// a proxy: every statement uses the extended protocol; a PreparedStatement
// run prepareThreshold (5) times becomes a named server-side statement
// (S_N) that later runs with Bind/Execute only; at connect it runs
// SET extra_float_digits = 3 and SET application_name; readOnly and
// transaction isolation are sent as SET SESSION CHARACTERISTICS / BEGIN.
import java.sql.*;
import java.util.*;

public class JdbcDriver {
    static final Map<String, String> env = System.getenv();
    static final String HOST = env.getOrDefault("PGSW_HOST", "127.0.0.1");
    static final int PRIMARY = Integer.parseInt(env.get("PRIMARY_PORT"));
    static final Set<Integer> REPLICAS = new HashSet<>();
    static final Set<String> WANTED = new HashSet<>();
    static final String TABLE = "drv_jdbc";
    static int failures = 0;

    static class Failed extends Exception {
        Failed(String why) { super(why); }
    }

    static void check(boolean cond, String why) throws Failed {
        if (!cond) throw new Failed(why);
    }

    static Connection proxy() throws SQLException {
        String url = "jdbc:postgresql://" + HOST + ":" + env.getOrDefault("PGSW_PORT", "6432") + "/" + env.getOrDefault("PGSW_DB", "app");
        return DriverManager.getConnection(url, env.getOrDefault("PGSW_USER", "app"), env.getOrDefault("PGSW_PASSWORD", "app"));
    }

    static Connection direct() throws SQLException {
        String url = "jdbc:postgresql://" + HOST + ":" + PRIMARY + "/" + env.getOrDefault("PGSW_DB", "app");
        return DriverManager.getConnection(url, env.getOrDefault("SUPERUSER", "postgres"), env.getOrDefault("SUPERPASS", "postgres"));
    }

    static String name(int p) {
        return p == PRIMARY ? "primary" : REPLICAS.contains(p) ? "replica:" + p : "unknown:" + p;
    }

    static String tally(List<Integer> ports) {
        TreeMap<String, Integer> m = new TreeMap<>();
        for (int p : ports) m.merge(name(p), 1, Integer::sum);
        StringBuilder sb = new StringBuilder();
        for (var e : m.entrySet()) sb.append(sb.length() > 0 ? " " : "").append(e.getKey()).append('=').append(e.getValue());
        return sb.toString();
    }

    static void allOnReplicas(List<Integer> ports, String what) throws Failed {
        check(!ports.isEmpty(), what + ": nothing ran");
        long onPrimary = ports.stream().filter(p -> p == PRIMARY).count();
        check(onPrimary == 0, what + ": " + onPrimary + " of " + ports.size() + " on the primary (" + tally(ports) + ")");
        check(ports.stream().allMatch(REPLICAS::contains), what + ": ran on an unknown server (" + tally(ports) + ")");
        if (REPLICAS.size() > 1 && ports.size() >= 4) check(new HashSet<>(ports).size() > 1, what + ": one replica only (" + tally(ports) + ")");
    }

    static int intQuery(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getInt(1);
        }
    }

    static double percentile(List<Double> v, double q) {
        List<Double> s = new ArrayList<>(v);
        Collections.sort(s);
        return s.get(Math.min(s.size() - 1, (int) (s.size() * q)));
    }

    interface Scenario { String run() throws Exception; }

    static void setup() throws SQLException {
        try (Connection d = direct(); Statement st = d.createStatement()) {
            st.execute("DROP TABLE IF EXISTS " + TABLE);
            st.execute("CREATE TABLE " + TABLE + " (id int PRIMARY KEY, v text)");
            st.execute("GRANT ALL ON " + TABLE + " TO PUBLIC");
        }
    }

    static String reads() throws Exception {
        try (Connection c = proxy()) {
            List<Integer> plain = new ArrayList<>();
            try (Statement st = c.createStatement()) {
                for (int i = 0; i < 10; i++) try (ResultSet rs = st.executeQuery("SELECT inet_server_port()")) { rs.next(); plain.add(rs.getInt(1)); }
            }
            allOnReplicas(plain, "Statement");
            List<Integer> prepared = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement("SELECT inet_server_port() + 0 * ?")) {
                for (int i = 0; i < 20; i++) { ps.setInt(1, i); prepared.add(intQuery(ps)); }
            }
            allOnReplicas(prepared, "PreparedStatement (server-prepared after prepareThreshold)");
            return "Statement " + tally(plain) + "; PreparedStatement " + tally(prepared);
        }
    }

    static String writes() throws Exception {
        try (Connection c = proxy(); PreparedStatement ps = c.prepareStatement("INSERT INTO " + TABLE + " VALUES (?, 'w') RETURNING inet_server_port()")) {
            List<Integer> ports = new ArrayList<>();
            for (int i = 0; i < 10; i++) { ps.setInt(1, 100000 + i); ports.add(intQuery(ps)); }
            check(ports.stream().allMatch(p -> p == PRIMARY), "writes not on the primary: " + tally(ports));
            return tally(ports);
        }
    }

    static String readAfterWrite() throws Exception {
        int n = 200, onReplica = 0, stale = 0;
        List<Double> lat = new ArrayList<>();
        try (Connection c = proxy();
             PreparedStatement ins = c.prepareStatement("INSERT INTO " + TABLE + " VALUES (?, 'x')");
             PreparedStatement sel = c.prepareStatement("SELECT inet_server_port(), count(*) FROM " + TABLE + " WHERE id = ?")) {
            for (int i = 0; i < n; i++) {
                ins.setInt(1, i);
                ins.executeUpdate();
                sel.setInt(1, i);
                long t = System.nanoTime();
                try (ResultSet rs = sel.executeQuery()) {
                    rs.next();
                    lat.add((System.nanoTime() - t) / 1000.0);
                    if (rs.getInt(2) != 1) stale++;
                    if (REPLICAS.contains(rs.getInt(1))) onReplica++;
                }
            }
        }
        System.out.printf("metric ryw_replica_share %.3f%n", onReplica / (double) n);
        System.out.printf("metric ryw_read_p50_us %.0f%n", percentile(lat, 0.5));
        System.out.printf("metric ryw_read_p99_us %.0f%n", percentile(lat, 0.99));
        check(stale == 0, stale + " of " + n + " reads did not see the session's own insert");
        check(onReplica >= n / 2, "only " + onReplica + " of " + n + " reads after a write ran on a replica");
        return onReplica + "/" + n + " on replicas, none stale";
    }

    static String batchOutcome(Connection c) throws SQLException {
        try (Statement st = c.createStatement()) { st.execute("TRUNCATE " + TABLE + "_batch"); }
        String raised = "none";
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + TABLE + "_batch VALUES (?)")) {
            for (int id : new int[] {1, 2, 3, 2, 4}) { ps.setInt(1, id); ps.addBatch(); }
            ps.executeBatch();
            c.commit();
        } catch (BatchUpdateException e) {
            raised = "BatchUpdateException " + e.getSQLState();
            c.rollback();
        }
        c.setAutoCommit(true);
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM " + TABLE + "_batch")) {
            rs.next();
            return raised + ", rows " + rs.getInt(1);
        }
    }

    static String batchError() throws Exception {
        try (Connection d = direct(); Statement st = d.createStatement()) {
            st.execute("DROP TABLE IF EXISTS " + TABLE + "_batch");
            st.execute("CREATE TABLE " + TABLE + "_batch (id int PRIMARY KEY)");
            st.execute("GRANT ALL ON " + TABLE + "_batch TO PUBLIC");
        }
        String want, got;
        try (Connection d = direct()) { want = batchOutcome(d); }
        try (Connection c = proxy()) { got = batchOutcome(c); }
        check(want.startsWith("BatchUpdateException"), "direct: " + want);
        check(got.equals(want), "through pgswitch " + got + ", direct " + want);
        return got + ", as direct";
    }

    static String serializableReadOnly() throws Exception {
        try (Connection c = proxy()) {
            c.setAutoCommit(false);
            c.setReadOnly(true);
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            int port;
            String iso;
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT inet_server_port(), current_setting('transaction_isolation')")) {
                rs.next();
                port = rs.getInt(1);
                iso = rs.getString(2);
            }
            c.commit();
            check(port == PRIMARY, "SERIALIZABLE READ ONLY ran on " + name(port) + " (a standby refuses it)");
            check(iso.equals("serializable"), "isolation " + iso);
            c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            List<Integer> ports = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement("SELECT inet_server_port()")) {
                for (int i = 0; i < 4; i++) { ports.add(intQuery(ps)); c.commit(); }
            }
            allOnReplicas(ports, "read-only (read committed) transactions");
            return "serializable on the primary; read only: " + tally(ports);
        }
    }

    static String functionBehindBack() throws Exception {
        String fn = "drv_jdbc_fn_" + (System.currentTimeMillis() % 100000000);
        try (Connection d = direct(); Statement st = d.createStatement()) {
            st.execute("CREATE FUNCTION " + fn + "(x int) RETURNS int LANGUAGE sql VOLATILE AS 'INSERT INTO " + TABLE
                       + " VALUES (200000 + x, ''f'') RETURNING inet_server_port()'");
        }
        try (Connection c = proxy(); PreparedStatement ps = c.prepareStatement("SELECT " + fn + "(?)")) {
            List<Integer> ports = new ArrayList<>();
            for (int i = 0; i < 8; i++) { ps.setInt(1, i); ports.add(intQuery(ps)); }
            check(ports.stream().allMatch(p -> p == PRIMARY), "calls ran on " + tally(ports));
            return tally(ports);
        }
    }

    static String backendPid() throws Exception {
        try (Connection c = proxy(); PreparedStatement ps = c.prepareStatement("SELECT pg_backend_pid()")) {
            int pid = c.unwrap(org.postgresql.PGConnection.class).getBackendPID();
            Set<Integer> seen = new HashSet<>();
            for (int i = 0; i < 6; i++) seen.add(intQuery(ps));
            check(seen.equals(Set.of(pid)), "pg_backend_pid() " + seen + ", BackendKeyData " + pid);
            return "pid " + pid;
        }
    }

    static String terminateBackend() throws Exception {
        try (Connection c = proxy()) {
            int pid = c.unwrap(org.postgresql.PGConnection.class).getBackendPID();
            try (Connection d = direct(); PreparedStatement ps = d.prepareStatement("SELECT pg_terminate_backend(?)")) {
                ps.setInt(1, pid);
                try (ResultSet rs = ps.executeQuery()) { rs.next(); check(rs.getBoolean(1), "pid " + pid + " is no backend of the primary"); }
            }
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (true) {
                try (Statement st = c.createStatement()) {
                    st.execute("SELECT 1");
                } catch (SQLException e) {
                    return "next query: " + e.getSQLState() + " " + e.getMessage().split("\n")[0];
                }
                check(System.nanoTime() < deadline, "the session survived pg_terminate_backend() of its pid");
                Thread.sleep(50);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        for (String p : env.getOrDefault("REPLICA_PORTS", "").split(",")) if (!p.isEmpty()) REPLICAS.add(Integer.parseInt(p));
        for (String s : env.getOrDefault("SCENARIOS", "").split(",")) if (!s.isEmpty()) WANTED.add(s);
        setup();
        LinkedHashMap<String, Scenario> all = new LinkedHashMap<>();
        all.put("reads", JdbcDriver::reads);
        all.put("writes", JdbcDriver::writes);
        all.put("read_after_write", JdbcDriver::readAfterWrite);
        all.put("pipeline_errors", JdbcDriver::batchError);
        all.put("serializable_read_only", JdbcDriver::serializableReadOnly);
        all.put("function_behind_back", JdbcDriver::functionBehindBack);
        all.put("backend_pid", JdbcDriver::backendPid);
        all.put("terminate_backend", JdbcDriver::terminateBackend);
        for (var e : all.entrySet()) {
            if (!WANTED.isEmpty() && !WANTED.contains(e.getKey())) continue;
            long t = System.nanoTime();
            try {
                String detail = e.getValue().run();
                System.out.printf("scenario %s ok %s (%.2fs)%n", e.getKey(), detail, (System.nanoTime() - t) / 1e9);
            } catch (Failed f) {
                failures++;
                System.out.println("scenario " + e.getKey() + " FAIL " + f.getMessage());
            } catch (Exception ex) {
                failures++;
                System.out.println("scenario " + e.getKey() + " FAIL " + ex);
                ex.printStackTrace(System.out);
            }
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
