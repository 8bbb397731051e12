/*
 * Starts Apache Iceberg's REST catalog server (RESTCatalogServer, iceberg-open-api test fixtures)
 * on one address instead of every interface.
 *
 * RESTCatalogServer builds its Jetty server with `new Server(port)`, which listens on 0.0.0.0, and
 * has no host option. The local stack must listen on loopback only, so this class does what
 * RESTCatalogServer.start does -- the same backend catalog (its own initializeBackendCatalog, so
 * the CATALOG_* environment variables mean exactly what they mean there), the same adapter,
 * servlet and gzip handler -- with one difference: the connector is bound to the host given by
 * the system property robolake.catalog.host (default 127.0.0.1).
 *
 * It lives in RESTCatalogServer's package because the adapter and the catalog context are
 * package-private; it is compiled once against the cached jars by `robolake stack install`.
 */
package org.apache.iceberg.rest;

import java.lang.reflect.Method;
import org.apache.iceberg.util.PropertyUtil;
import org.eclipse.jetty.compression.gzip.GzipCompression;
import org.eclipse.jetty.compression.server.CompressionHandler;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class LoopbackRESTCatalogServer {
  public static final String HOST_PROPERTY = "robolake.catalog.host";

  private LoopbackRESTCatalogServer() {}

  public static void main(String[] args) throws Exception {
    String host = System.getProperty(HOST_PROPERTY, "127.0.0.1");

    Method initialize = RESTCatalogServer.class.getDeclaredMethod("initializeBackendCatalog");
    initialize.setAccessible(true);
    RESTCatalogServer.CatalogContext catalogContext =
        (RESTCatalogServer.CatalogContext) initialize.invoke(new RESTCatalogServer());
    int port =
        PropertyUtil.propertyAsInt(
            catalogContext.configuration(),
            RESTCatalogServer.REST_PORT,
            RESTCatalogServer.REST_PORT_DEFAULT);

    RESTCatalogServlet servlet =
        new RESTCatalogServlet(new RESTServerCatalogAdapter(catalogContext));
    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(servlet), "/*");
    CompressionHandler compression = new CompressionHandler();
    compression.putCompression(new GzipCompression());
    context.insertHandler(compression);

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    server.join();
  }
}
